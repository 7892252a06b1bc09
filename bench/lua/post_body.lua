-- SPDX-License-Identifier: MIT
-- POST a fixed form body from $BODY (e.g. "token=..."), optional $AUTH header.
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
if os.getenv("AUTH") then wrk.headers["Authorization"] = os.getenv("AUTH") end
