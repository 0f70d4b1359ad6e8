"""Scheduling: node labels, taints and cordon; placement rules on workloads; drain; why a Pod is Pending.

One module per concern:

- :mod:`.nodes` — ``label``, ``taint``/``untaint``, ``cordon``/``uncordon`` and node tables;
- :mod:`.workloads` — Deployments with nodeSelector, (anti-)affinity and tolerations; where replicas landed;
- :mod:`.drain` — the Eviction API drain that honours PodDisruptionBudgets;
- :mod:`.explain` — the scheduler's filters recomputed in memory (pure, on API dicts);
- :mod:`.pending` — that explanation for live Pods, beside the scheduler's own words;
- :mod:`.board` — nodes × labels, taints, conditions, requests and Pods;
- :mod:`.diagnose` — why a wait of this topic cannot succeed, in one line, within seconds.
"""
