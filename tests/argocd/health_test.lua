-- Runs the chart's Argo CD health check (charts/vault-connection-operator/docs/argocd-health.lua)
-- on sample VaultConnections the way Argo CD does (the script sees the object as the global `obj`
-- and returns a table with status and message) and checks the verdicts.
-- Usage: lua5.4 tests/argocd/health_test.lua   (exits non-zero when a case fails)

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local script_path = here .. "/../../charts/vault-connection-operator/docs/argocd-health.lua"
local file = assert(io.open(script_path, "r"), "cannot open " .. script_path)
local source = file:read("a")
file:close()

-- Evaluates the health script for OBJ in a fresh environment, as Argo CD gives each run its own.
local function health(obj)
  local env = setmetatable({ obj = obj }, { __index = _G })
  local chunk = assert(load(source, "=argocd-health.lua", "t", env))
  return chunk()
end

local function connection(generation, status)
  return {
    apiVersion = "vaultconnections.io/v1alpha1",
    kind = "VaultConnection",
    metadata = { name = "doppler-production", namespace = "team-a", generation = generation },
    spec = { vaultType = "doppler" },
    status = status,
  }
end

local function ready(status, reason, message, observed)
  return {
    observedGeneration = observed or 3,
    conditions = {
      { type = "Valid", status = "True", reason = "Valid", message = "spec is valid", observedGeneration = observed or 3 },
      { type = "Ready", status = status, reason = reason, message = message, observedGeneration = observed or 3 },
    },
  }
end

local cases = {
  {
    name = "a Ready connection is Healthy with the Ready message",
    obj = connection(3, ready("True", "Synced", "credentials stored in SSM")),
    status = "Healthy",
    message = "credentials stored in SSM",
  },
  {
    name = "invalid credentials are Degraded with reason and message",
    obj = connection(3, ready("False", "InvalidCredentials", "accessToken must start with dp.st., dp.sa., ...")),
    status = "Degraded",
    message = "InvalidCredentials: accessToken must start with dp.st., dp.sa., ...",
  },
  {
    name = "a tier limit is Degraded",
    obj = connection(3, ready("False", "TierLimitExceeded", "namespace tier free allows 1 connection")),
    status = "Degraded",
    message = "TierLimitExceeded: namespace tier free allows 1 connection",
  },
  {
    name = "throttling is Progressing (the operator retries)",
    obj = connection(3, ready("False", "Throttled", "SSM throttled the write; retrying")),
    status = "Progressing",
    message = "Throttled: SSM throttled the write; retrying",
  },
  {
    name = "a failed sync is Progressing (the operator retries)",
    obj = connection(3, ready("False", "SyncFailed", "SSM did not answer; retrying")),
    status = "Progressing",
  },
  {
    name = "no status yet is Progressing, waiting for the operator",
    obj = connection(1, nil),
    status = "Progressing",
    message = "Waiting for the operator",
  },
  {
    name = "a status for an older generation is Progressing, even if it said Ready",
    obj = connection(4, ready("True", "Synced", "credentials stored in SSM", 3)),
    status = "Progressing",
    message = "Waiting for the operator",
  },
  {
    name = "a status without observedGeneration is Progressing",
    obj = connection(2, { conditions = { { type = "Ready", status = "True", reason = "Synced", message = "ok" } } }),
    status = "Progressing",
    message = "Waiting for the operator",
  },
  {
    name = "a Ready condition older than the status is Progressing",
    obj = connection(4, {
      observedGeneration = 4,
      conditions = { { type = "Ready", status = "False", reason = "SecretNotFound", message = "x", observedGeneration = 3 } },
    }),
    status = "Progressing",
    message = "Waiting for the operator",
  },
  {
    name = "Ready=Unknown is Progressing",
    obj = connection(3, ready("Unknown", "Reconciling", "validating the spec")),
    status = "Progressing",
    message = "Reconciling: validating the spec",
  },
  {
    name = "a status without a Ready condition is Progressing",
    obj = connection(3, { observedGeneration = 3, conditions = {} }),
    status = "Progressing",
    message = "Waiting for the operator",
  },
  {
    name = "Ready=False without a message still names the reason",
    obj = connection(3, ready("False", "AccessDenied", nil)),
    status = "Degraded",
    message = "AccessDenied",
  },
}

local failures = 0
for _, case in ipairs(cases) do
  local ok, result = pcall(health, case.obj)
  local problem = nil
  if not ok then
    problem = "the script raised an error: " .. tostring(result)
  elseif type(result) ~= "table" then
    problem = "the script returned " .. type(result) .. ", not a table"
  elseif result.status ~= case.status then
    problem = string.format("status %q, want %q (message %q)", tostring(result.status), case.status, tostring(result.message))
  elseif case.message ~= nil and result.message ~= case.message then
    problem = string.format("message %q, want %q", tostring(result.message), case.message)
  end
  if problem then
    failures = failures + 1
    print("FAIL " .. case.name .. ": " .. problem)
  else
    print("ok   " .. case.name)
  end
end

print(string.format("%d case(s), %d failure(s)", #cases, failures))
if failures > 0 then
  os.exit(1)
end
