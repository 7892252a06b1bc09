-- SPDX-License-Identifier: MIT
-- Issue an API token, then delete it by id: each issued id is queued and the
-- next request of the thread deletes it, so live tokens stay bounded.
local ids = {}
local auth = os.getenv("AUTH")
function request()
  local id = table.remove(ids)
  if id then
    return wrk.format("POST", wrk.path .. "delete/",
      {["Authorization"] = auth, ["Content-Type"] = "application/json"},
      '{"token_issuer_uuids":["' .. id .. '"]}')
  end
  return wrk.format("POST", wrk.path, {["Authorization"] = auth}, nil)
end
function response(status, headers, body)
  local id = body:match('"token_issuer_uuid":"([%x%-]+)"')
  if id then ids[#ids + 1] = id end
end
