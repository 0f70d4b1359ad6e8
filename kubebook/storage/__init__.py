"""Storage: PersistentVolumes and claims, why a claim is Pending, StorageClasses and provisioning.

One module per concern:

- :mod:`.volumes` — PV/PVC objects, their phases watched (Available → Bound → Released → Available),
  backups before deletes, and where kubelet puts a Pod's volumes;
- :mod:`.binding` — the PV controller's matching rules recomputed: PVs × checks for a claim;
- :mod:`.provisioning` — StorageClasses, the default-class annotation, dynamic provisioning and the
  course's nfs-client-provisioner objects.
"""
