"""A laptop-sized Kubernetes cluster without Docker: a real control plane, kwok nodes, and the real Argo CD.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as processes on loopback; kwok
pretends that nodes and pods run (no containers here); the real Argo CD application-controller and
repo-server sync from a git repository. Binaries are built from pinned Go modules by `make cluster`
(dev/local-cluster/go/); state lives in .tools/cluster/.
"""
