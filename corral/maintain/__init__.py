"""Monthly and quarterly maintenance: image inventory, vulnerability reports, policy against
behaviour, threat model, topology. Reads the policy, manifests, cluster dumps, the stores and
scanner reports; writes reports only (and the policy edit the quarterly review suggests)."""
