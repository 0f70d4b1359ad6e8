"""Storage: PersistentVolumes and claims, why a claim is Pending, StorageClasses and provisioning.

One module per concern:

- :mod:`.volumes` — PV/PVC objects as plan steps, their phases watched (Available → Bound → Released →
  Available), and where kubelet puts a Pod's volumes;
- :mod:`.binding` — the PV controller's matching rules recomputed: PVs × checks for a claim, and the
  same rules as the diagnosis of every wait for a claim (why it cannot bind, within seconds);
- :mod:`.provisioning` — StorageClasses, the default-class annotation, dynamic provisioning and the
  course's nfs-client-provisioner objects;
- :mod:`.migrate` — volume kinds side by side, and moving a Deployment's data onto a claim.
"""
