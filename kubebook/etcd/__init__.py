"""etcd: operations (client), snapshots, restore, decoding /registry, namespace recovery.

    from kubebook import etcd
    target = etcd.target(lab="demo")
    client = etcd.connect(target=target)      # prints where the endpoint and certificates came from
    client.member_list()
"""
from .client import (DEFAULT_CACERT, DEFAULT_CERT, DEFAULT_ENDPOINT, DEFAULT_KEY, Etcd, EtcdError,
                     PrefixWatch, cleanup_keys, connect, display_value, human_bytes, parse_endpoints,
                     parse_registry_key, put_many, registry_summary, target)

__all__ = ["DEFAULT_CACERT", "DEFAULT_CERT", "DEFAULT_ENDPOINT", "DEFAULT_KEY", "Etcd", "EtcdError", "PrefixWatch",
           "cleanup_keys", "connect", "display_value", "human_bytes", "parse_endpoints", "parse_registry_key",
           "put_many", "registry_summary", "target"]
