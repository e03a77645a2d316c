-- Argo CD health of a ModelVersion (finetune.fto.dev). Healthy once registered (a candidate),
-- serving (Production) or archived; Progressing while registering or promoting; Degraded when
-- it failed, was rolled back, or is a candidate whose gates or compatibility checks failed.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to register the version"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see generation " .. tostring(generation) ..
    " (status is for " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local function failed_condition()
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if (c.type == "GatesPassed" or c.type == "Compatible") and c.status == "False" then
      return c
    end
  end
  return nil
end

local function describe(prefix)
  local parts = { prefix }
  if status.reason ~= nil and status.reason ~= "" then
    table.insert(parts, status.reason)
  end
  if status.message ~= nil and status.message ~= "" then
    table.insert(parts, status.message)
  end
  return table.concat(parts, ": ")
end

local phase = status.phase
if phase == "Registered" or phase == "Production" or phase == "Archived" then
  local bad = failed_condition()
  if phase == "Registered" and bad ~= nil then
    hs.status = "Degraded"
    hs.message = (bad.reason or bad.type) .. ": " .. (bad.message or "")
  else
    hs.status = "Healthy"
    hs.message = phase
    if phase == "Production" and status.servedName ~= nil then
      hs.message = "Production: served as " .. status.servedName
    end
  end
elseif phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = describe("RolledBack")
  if status.rollback ~= nil and status.rollback.restoredVersion ~= nil then
    hs.message = hs.message .. " (restored " .. status.rollback.restoredVersion .. ")"
  end
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe("Failed")
else
  -- Pending, Registering, Promoting, or a phase newer than this script.
  hs.status = "Progressing"
  hs.message = describe(phase)
end
return hs
