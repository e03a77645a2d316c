"""The process node: a node object served by our agent, whose pods really run as local processes.

What it does: watches pods bound to its node, materialises their volumes (emptyDir, Secret,
ConfigMap, downward API, projected service-account tokens from the TokenRequest API) into a
per-pod folder, and runs each container's command in a private mount namespace where those
folders are bind-mounted at the containers' mount paths. It gives each pod its own loopback
address as pod IP, sets the in-cluster environment to the apiserver's loopback address,
honours restart policies, HTTP/TCP/exec readiness probes, termination messages and grace
periods, renews the node's Lease and reports real pod status.

What it does not do (and says so in pod status where a pod asks for it): pull images (an image
name maps to commands installed in the project's environment, see images.py), isolate
processes (no cgroups, no network or PID namespaces, no resource limits; runAsUser is not
applied), mount PVCs or hostPaths, run liveness/startup probes, ephemeral containers, or
serve `kubectl logs/exec` (container logs are files in the pod's folder; `hack/cluster
pod-logs` prints them).
"""
