-- Argo CD health check for vaultconnections.io/VaultConnection.
-- Install it as resource.customizations.health.vaultconnections.io_VaultConnection in argocd-cm
-- (see argocd-cm.yaml next to this file). Argo CD sets `obj` to the live object.
--
--   no status, or status older than the spec   -> Progressing "Waiting for the operator"
--   Ready=True                                 -> Healthy, with the Ready message
--   Ready=False, transient reason              -> Progressing (the operator retries by itself)
--   Ready=False, any other reason              -> Degraded "<reason>: <message>"
--   Ready=Unknown, or no Ready condition yet   -> Progressing
local hs = { status = "Progressing", message = "Waiting for the operator" }

-- Reasons the operator recovers from without anyone changing anything.
local transient = { Throttled = true, SyncFailed = true }

local status = obj.status
if status == nil then
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  return hs
end

local ready = nil
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
    break
  end
end
if ready == nil then
  return hs
end

-- A Ready condition written for an older generation says nothing about the current spec.
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  return hs
end

local reason = ready.reason or ""
local message = ready.message or ""
local function describe()
  if reason == "" then
    return message
  end
  if message == "" then
    return reason
  end
  return reason .. ": " .. message
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
elseif ready.status == "False" then
  hs.status = transient[reason] and "Progressing" or "Degraded"
  hs.message = describe()
else
  hs.message = describe()
  if hs.message == "" then
    hs.message = "Waiting for the operator"
  end
end
return hs
