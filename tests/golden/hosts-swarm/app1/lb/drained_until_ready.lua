-- Rendered by syrcad for the public LB under Swarm. Edit hosts.yml, not this file.
--
-- A task that Swarm's DNS lists again (its host came back) leaves MAINT straight to UP, with no
-- check: HAProxy would send it turns before its agent (compose/swarm/leave_lbs_first.py) could say
-- that its store breaker is still open. So every server that is DOWN or in MAINT is kept drained;
-- a drain outlasts MAINT ("remains in forced drain mode"), and the agent's "ready" lifts it once
-- the task can serve.
local backends = { "frontends", "socketio" }

-- HAProxy 2.6 answers 0 or 1, later versions a boolean.
local function draining(server)
  local answer = server:is_draining()
  return answer == true or answer == 1
end

core.register_task(function()
  while true do
    for _, name in ipairs(backends) do
      for _, server in pairs(core.backends[name].servers) do
        local status = server:get_stats()["status"]
        local out = status:sub(1, 4) == "DOWN" or status:sub(1, 5) == "MAINT"
        if out and not draining(server) then
          server:set_drain()
        end
      end
    end
    -- A server stays DOWN or in MAINT for seconds at least: a tenth of a second finds it there.
    core.msleep(100)
  end
end)
