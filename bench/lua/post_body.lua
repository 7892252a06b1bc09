-- SPDX-License-Identifier: MIT
-- POST a fixed form body from $BODY (e.g. "token=..."), optional $AUTH and $ORIGIN headers.
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
if os.getenv("AUTH") then wrk.headers["Authorization"] = os.getenv("AUTH") end
if os.getenv("ORIGIN") then wrk.headers["Origin"] = os.getenv("ORIGIN") end
