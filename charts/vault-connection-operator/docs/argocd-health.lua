-- Argo CD health check for vaultconnections.io/VaultConnection.
-- Install it as resource.customizations.health.vaultconnections.io_VaultConnection in argocd-cm
-- (see argocd-cm.yaml next to this file). Argo CD sets `obj` to the live object and runs the
-- script with gopher-lua (Lua 5.1) and only the base, table and a reduced os library: no string
-- methods here.
--
--   no status, or status older than the spec   -> Progressing "Waiting for the operator"
--   Stalled=True (a person must act)           -> Degraded "<reason>: <message>"
--   Reconciling=True (work or retries ongoing) -> Progressing "<reason>: <message>"
--   Ready=True                                 -> Healthy, with the Ready message
-- Operators from before Stalled/Reconciling existed only set Ready; then:
--   Ready=False, transient reason              -> Progressing (the operator retries by itself)
--   Ready=False, any other reason              -> Degraded "<reason>: <message>"
--   Ready=Unknown, or no Ready condition yet   -> Progressing
local hs = { status = "Progressing", message = "Waiting for the operator" }

-- Reasons the operator recovers from without anyone changing anything (for Ready-only statuses).
local transient = { Throttled = true, SyncFailed = true }

local status = obj.status
if status == nil then
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  return hs
end

local found = {}
for _, condition in ipairs(status.conditions or {}) do
  if condition.type ~= nil and found[condition.type] == nil then
    found[condition.type] = condition
  end
end

-- A condition written for an older generation says nothing about the current spec.
local function current(condition)
  return condition ~= nil
    and not (generation ~= nil and condition.observedGeneration ~= nil and condition.observedGeneration < generation)
end

local function describe(condition)
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason == "" then
    return message
  end
  if message == "" then
    return reason
  end
  return reason .. ": " .. message
end

local ready = found["Ready"]
local stalled = found["Stalled"]
local reconciling = found["Reconciling"]
if not current(ready) or (stalled ~= nil and not current(stalled))
  or (reconciling ~= nil and not current(reconciling)) then
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(reconciling)
  if hs.message == "" then
    hs.message = "Waiting for the operator"
  end
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
elseif ready.status == "False" then
  hs.status = transient[ready.reason or ""] and "Progressing" or "Degraded"
  hs.message = describe(ready)
else
  hs.message = describe(ready)
  if hs.message == "" then
    hs.message = "Waiting for the operator"
  end
end
return hs
