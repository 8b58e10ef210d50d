-- Argo CD health check for the Omniflow kinds (Tenant, MetaChannel,
-- DeletionRequest): the kstatus rules the operator writes its status for.
local hs = { status = "Progressing", message = "Waiting for the operator to report status" }
if obj.status == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end
local ready = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Stalled" and c.status == "True" then
      return { status = "Degraded", message = (c.reason or "") .. ": " .. (c.message or "") }
    end
    if c.type == "Reconciling" and c.status == "True" then
      return { status = "Progressing", message = (c.reason or "") .. ": " .. (c.message or "") }
    end
    if c.type == "Ready" then
      ready = c
    end
  end
end
if ready ~= nil and ready.status == "True" then
  return { status = "Healthy", message = (ready.reason or "") .. ": " .. (ready.message or "") }
end
if ready ~= nil then
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
end
return hs
