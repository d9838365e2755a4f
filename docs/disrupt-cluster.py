#!/usr/bin/env python3
"""Writes a generated cluster for timing `kerf disrupt` (JSON documents on stdout).

    python3 docs/disrupt-cluster.py 2000 half   > /tmp/half.json    # multi-node deletes
    python3 docs/disrupt-cluster.py 2000 full   > /tmp/full.json    # 26 nodes -> one bigger node
    python3 docs/disrupt-cluster.py 2000 steady > /tmp/steady.json  # nothing to do
    time target/release/kerf disrupt -f /tmp/half.json --now 2026-11-24T12:00:00Z -o json

One NodePool (on-demand amd64, 10% budget, consolidateAfter 0s), N nodes over three
zones, three pods per node. `half`: m7i.xlarge nodes about half used. `full`: c6a.xlarge
nodes with three 1.2-CPU pods. `steady`: as `full`, but the pool allows only xlarge
sizes, so no consolidation is possible and every node is evaluated.
"""
import json
import sys

n, shape = int(sys.argv[1]), sys.argv[2]
requirements = [
    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
]
if shape == "steady":
    requirements.append({"key": "karpenter.k8s.aws/instance-size", "operator": "In", "values": ["xlarge"]})
itype = "m7i.xlarge" if shape == "half" else "c6a.xlarge"
memory = "14162Mi" if shape == "half" else "6400Mi"
docs = [{
    "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "default"},
    "spec": {
        "template": {"spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "requirements": requirements}},
        "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "0s",
                       "budgets": [{"nodes": "10%"}]}}}]
zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
for i in range(n):
    node = f"node-{i:04d}"
    docs.append({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node, "creationTimestamp": "2026-11-20T00:00:00Z", "labels": {
            "karpenter.sh/nodepool": "default", "karpenter.sh/capacity-type": "on-demand",
            "node.kubernetes.io/instance-type": itype, "topology.kubernetes.io/zone": zones[i % 3],
            "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}},
        "status": {"allocatable": {"cpu": "3920m", "memory": memory, "pods": "58"}}})
    for k in range(3):
        cpu = f"{400 + 100 * ((i * 7 + k * 3) % 8)}m" if shape == "half" else "1200m"
        docs.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"app-{i:04d}-{k}", "namespace": "default", "labels": {"app": f"app-{(i + k) % 50}"}},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}})
print("\n".join(json.dumps(d) for d in docs))
