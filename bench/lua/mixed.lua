-- SPDX-License-Identifier: MIT
-- The soak mix: verify, list, a 401 and a 404, in turn.
local auth = os.getenv("AUTH")
local token = os.getenv("TOKEN")
local list = os.getenv("LIST_PATH")
local i = 0
function request()
  i = i + 1
  local k = i % 4
  if k == 0 then
    return wrk.format("POST", "/api/auth/jwt/verify/",
      {["Content-Type"] = "application/x-www-form-urlencoded"}, "token=" .. token)
  elseif k == 1 then
    return wrk.format("GET", list, {["Authorization"] = auth}, nil)
  elseif k == 2 then
    return wrk.format("GET", list, {["Authorization"] = "Bearer bad.token.here"}, nil)
  end
  return wrk.format("GET", "/nope", nil, nil)
end
