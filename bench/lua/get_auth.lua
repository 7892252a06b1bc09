-- SPDX-License-Identifier: MIT
-- GET with the Authorization header from $AUTH (and Origin from $ORIGIN, if set).
wrk.headers["Authorization"] = os.getenv("AUTH")
if os.getenv("ORIGIN") then wrk.headers["Origin"] = os.getenv("ORIGIN") end
