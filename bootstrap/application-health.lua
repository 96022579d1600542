-- Health of a child Application, as the root app-of-apps sees it (sync waves wait on it).
-- bootstrap/install.sh installs this file as argocd-cm's
-- resource.customizations.health.argoproj.io_Application; tests/gitops/test_application_health.py runs it.
--
-- Upstream's documented check relays .status.health only, so a child that failed to render (sync
-- Unknown + ComparisonError, nothing rendered, health "Healthy") or whose sync failed let the next
-- wave roll out without it. Here a child is Healthy only when it is Synced, its own health is
-- Healthy and nothing says otherwise; the message names the reason.
local hs = {status = "Progressing", message = "waiting for the first reconciliation"}
if obj.status == nil then
  return hs
end
local status = obj.status

-- Cannot render or compare: a broken chart, an unknown values key, a forbidden namespace.
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "ComparisonError" or condition.type == "InvalidSpecError" then
      hs.status = "Degraded"
      hs.message = condition.type .. ": " .. (condition.message or "")
      return hs
    end
  end
end

-- The last sync ran and failed (after its retries).
local operation = status.operationState
if operation ~= nil and (operation.phase == "Failed" or operation.phase == "Error") then
  hs.status = "Degraded"
  hs.message = "last sync " .. string.lower(operation.phase) .. ": " .. (operation.message or "")
  return hs
end

local sync = "Unknown"
if status.sync ~= nil and status.sync.status ~= nil then
  sync = status.sync.status
end
if sync == "Unknown" then
  hs.status = "Degraded"
  hs.message = "sync status Unknown: Argo CD cannot compare this application with git"
  return hs
end

local health, message = "Progressing", ""
if status.health ~= nil then
  health = status.health.status or "Progressing"
  message = status.health.message or ""
end
if sync == "OutOfSync" and (health == "Healthy" or health == "Missing") then
  hs.status = "Progressing"
  hs.message = "OutOfSync: waiting for the sync to apply the desired state"
  return hs
end
hs.status = health
hs.message = message
return hs
