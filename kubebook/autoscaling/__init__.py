"""Scaling workloads: by hand through the Deployment's replica count, and automatically with a HorizontalPodAutoscaler.

    scale.scale(plan, "kubebook-scaling", "eladmin-web", 3)          # kubectl scale deployment ... --replicas=3
    scale.wait_replicas(plan, "kubebook-scaling", "eladmin-web", 3)  # watch until 3 replicas are ready
    hpa.apply_hpa(plan, "kubebook-hpa", hpa.hpa_body("eladmin-web", min_replicas=1, max_replicas=3))
    metrics.ensure_metrics(plan, target)                             # the metrics API (a lab add-on on a lab)
"""
