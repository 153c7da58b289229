-- POST a 16 KiB body; the echo app sends it back.  wrk computes
-- Content-Length from wrk.body.
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
