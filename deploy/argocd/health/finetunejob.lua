-- Argo CD health of a FineTuneJob (finetune.fto.dev). Argo runs this with the object in `obj`
-- and reads {status, message}. Progressing until the job ends; Healthy when it succeeded,
-- Degraded when it failed or was cancelled, Suspended while spec.lifecycle.suspend holds it.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the job"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see generation " .. tostring(generation) ..
    " (status is for " .. tostring(status.observedGeneration) .. ")"
  return hs
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
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded"
  if status.modelVersion ~= nil then
    hs.message = "Succeeded; registered ModelVersion " .. status.modelVersion
  end
elseif phase == "Failed" or phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = describe(phase)
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe("Suspended")
elseif phase == "Running" and status.progress ~= nil and status.progress.display ~= nil then
  hs.status = "Progressing"
  hs.message = "Running: step " .. status.progress.display
  if status.progress.trainLoss ~= nil then
    hs.message = hs.message .. ", loss " .. string.format("%.4g", status.progress.trainLoss)
  end
else
  -- Pending, Validating, Queued, Running without progress yet, or a phase newer than this script.
  hs.status = "Progressing"
  hs.message = describe(phase)
end
return hs
