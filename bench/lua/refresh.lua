-- SPDX-License-Identifier: MIT
-- Refresh with single-use tokens: thread N reads $TOKENS_DIR/N.txt (one
-- refresh token per line, minted by bench/run.py) and spends each once.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local tokens, next_i = {}, 1
function init(args)
  for line in io.lines(os.getenv("TOKENS_DIR") .. "/" .. id .. ".txt") do
    tokens[#tokens + 1] = line
  end
end
function request()
  local t = tokens[next_i] or tokens[#tokens]
  next_i = next_i + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"},
                    "refresh=" .. t)
end
