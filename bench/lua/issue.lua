-- SPDX-License-Identifier: MIT
-- Issue an API token, nothing else: live tokens grow by the rate times the
-- run's length (bench/issue_scale.py deletes them again after each run).
local auth = os.getenv("AUTH")
function request()
  return wrk.format("POST", wrk.path, {["Authorization"] = auth}, nil)
end
