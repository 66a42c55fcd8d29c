-- The generation `g` is "<epoch>.<n>": the epoch is Redis' TIME when the hash was (re)created,
-- n counts steps. Strings, not Lua numbers (which print as 1.8e+15), and a hash that expired and
-- was created again never repeats an old generation, so a token read before the expiry cannot
-- match after it.
local function now_ms(t) return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local function bump(g, t)
  if g then
    local epoch, n = string.match(g, '^(.*)%.(%d+)$')
    if epoch then return epoch .. '.' .. tostring(tonumber(n) + 1) end
  end
  return t[1] .. '-' .. t[2] .. '.1'
end
-- Changes in flight (field w), or 0 once their deadline (field wu) has passed: presumed dead.
local function live_writers(w, wu, now)
  if (tonumber(wu) or 0) < now then return 0 end
  return tonumber(w) or 0
end
