"""Scaling workloads: by hand through the scale subresource, and automatically with a HorizontalPodAutoscaler.

    scale.scale(api, "luffy", "eladmin-web", 3, plan=plan)        # kubectl scale deployment ... --replicas=3
    timeline = scale.wait_replicas(api, "luffy", "eladmin-web", 3)  # watch until 3 replicas are ready
    hpa.autoscale(api, "luffy", "eladmin-web", min_replicas=1, max_replicas=3, plan=plan)
"""
