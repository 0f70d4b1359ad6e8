"""etcd: operations (client), snapshots, restore, decoding /registry, namespace recovery.

    from kubebook import etcd
    etcd.connect(lab="demo").member_list()
"""
from .client import (DEFAULT_CACERT, DEFAULT_CERT, DEFAULT_ENDPOINT, DEFAULT_KEY, Etcd, EtcdError,
                     PrefixWatch, connect, display_value, human_bytes, parse_endpoints, parse_registry_key,
                     put_many)

__all__ = ["DEFAULT_CACERT", "DEFAULT_CERT", "DEFAULT_ENDPOINT", "DEFAULT_KEY", "Etcd", "EtcdError", "PrefixWatch",
           "connect", "display_value", "human_bytes", "parse_endpoints", "parse_registry_key", "put_many"]
