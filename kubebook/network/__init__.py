"""Cluster networking: Pod IPs and podCIDRs, flannel's configuration, and a netns lab for VXLAN and host-gw.

- :mod:`.podcidr` — the cluster CIDR inferred from nodes' podCIDRs; Pod IPs against their node's range;
- :mod:`.flannel` — 10-flannel.conflist, net-conf.json and subnet.env rendered and validated; the
  kube-flannel ConfigMap read, and the backend switch (patch + Pod restart) as a plan;
- :mod:`.netns` — network namespaces as lab machines: create, configure through netlink (pyroute2), read, delete;
- :mod:`.topology` — the course's demos (vxlan20 point to point, flannel vxlan and host-gw) as netns items;
- :mod:`.icmp` — a raw-socket ping run inside a lab namespace (no ``ping`` binary needed).
"""
