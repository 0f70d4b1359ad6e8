"""Scheduled runs: a runbook as a CronJob with a least-privilege ServiceAccount, or as a crontab
line / systemd timer on a control-plane host.

    schedule = build("etcd/snapshot", "0 */6 * * *", {"confirm": "k8s-master"})
    print(schedule.show())                 # the manifests, Secret values masked
    cluster.make(api, schedule, plan=plan)  # dry run (server-validated) unless plan is confirmed
    cluster.check_access(api, schedule)     # SubjectAccessReviews: needed allowed, others denied
"""
from .job import DEFAULT_IMAGE, DEFAULT_NAMESPACE, Schedule, build, job_values

__all__ = ["DEFAULT_IMAGE", "DEFAULT_NAMESPACE", "Schedule", "build", "job_values"]
