// kubebook-decode turns the values Kubernetes stores in etcd into JSON, using the
// upstream codecs compiled in (client-go's scheme, apiextensions, apiregistration).
//
//	kubebook-decode snapshot -file X.db [-prefix /registry/] [-keys-only]
//	    reads a snapshot (or a stopped member's db) read-only, no etcd needed; one
//	    JSON line per live key at the snapshot's newest revision.
//	kubebook-decode values
//	    reads {"key": K, "value": base64} lines on stdin (values fetched from a live etcd)
//	    and writes one decoded JSON line for each.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	apiextinstall "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"
	apireginstall "k8s.io/kube-aggregator/pkg/apis/apiregistration/install"
)

// Some groups are still stored as JSON in an older version (CRDs as apiextensions.k8s.io/v1beta1);
// they are converted to the version clients use, through the group's internal types.
var upgrades = map[schema.GroupVersion]schema.GroupVersion{
	{Group: "apiextensions.k8s.io", Version: "v1beta1"}:   {Group: "apiextensions.k8s.io", Version: "v1"},
	{Group: "apiregistration.k8s.io", Version: "v1beta1"}: {Group: "apiregistration.k8s.io", Version: "v1"},
}

var (
	protobufMagic  = []byte("k8s\x00")
	encryptedMagic = []byte("k8s:enc:")
)

// record is one key as kubebook's Python side reads it.
type record struct {
	Key            string          `json:"key"`
	CreateRevision int64           `json:"create_revision,omitempty"`
	ModRevision    int64           `json:"mod_revision,omitempty"`
	Version        int64           `json:"version,omitempty"`
	Size           int             `json:"size"`
	Encoding       string          `json:"encoding"` // protobuf, json, encrypted, text, binary, none
	Provider       string          `json:"provider,omitempty"`
	Object         json.RawMessage `json:"object,omitempty"`
	ConvertedFrom  string          `json:"converted_from,omitempty"`
	Error          string          `json:"error,omitempty"`
}

type decoder struct {
	scheme    *runtime.Scheme
	proto     *protobuf.Serializer
	universal runtime.Decoder
}

func newDecoder() *decoder {
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		fmt.Fprintln(os.Stderr, "scheme:", err)
		os.Exit(2)
	}
	apiextinstall.Install(s)
	apireginstall.Install(s)
	return &decoder{scheme: s, proto: protobuf.NewSerializer(s, s),
		universal: serializer.NewCodecFactory(s).UniversalDeserializer()}
}

// upgrade converts a JSON-stored object of an old version; it returns nil when there is nothing to do.
func (d *decoder) upgrade(value []byte) (json.RawMessage, string, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(value, &tm); err != nil {
		return nil, "", nil
	}
	from, err := schema.ParseGroupVersion(tm.APIVersion)
	to, ok := upgrades[from]
	if err != nil || !ok {
		return nil, "", nil
	}
	obj, _, err := d.universal.Decode(value, nil, nil)
	if err != nil {
		return nil, "", err
	}
	internal, err := d.scheme.ConvertToVersion(obj, schema.GroupVersion{Group: from.Group, Version: runtime.APIVersionInternal})
	if err != nil {
		return nil, "", err
	}
	out, err := d.scheme.ConvertToVersion(internal, to)
	if err != nil {
		return nil, "", err
	}
	out.GetObjectKind().SetGroupVersionKind(to.WithKind(tm.Kind))
	raw, err := json.Marshal(out)
	return raw, from.String(), err
}

func (d *decoder) decode(key string, value []byte) record {
	r := record{Key: key, Size: len(value)}
	switch {
	case bytes.HasPrefix(value, encryptedMagic):
		// k8s:enc:<provider>:v1:<key name>:<ciphertext>; without the key nothing more can be said
		r.Encoding = "encrypted"
		parts := strings.SplitN(string(value[len(encryptedMagic):]), ":", 4)
		if len(parts) >= 3 {
			r.Provider = parts[0] + ":" + parts[2]
		}
	case bytes.HasPrefix(value, protobufMagic):
		r.Encoding = "protobuf"
		obj, gvk, err := d.proto.Decode(value, nil, nil)
		if err != nil {
			r.Error = err.Error()
			break
		}
		obj.GetObjectKind().SetGroupVersionKind(*gvk)
		out, err := json.Marshal(obj)
		if err != nil {
			r.Error = err.Error()
			break
		}
		r.Object = out
	case json.Valid(value) && bytes.HasPrefix(bytes.TrimSpace(value), []byte("{")):
		r.Encoding = "json" // custom resources, CRDs, APIServices: stored as JSON already
		r.Object = json.RawMessage(bytes.TrimSpace(value))
		if upgraded, from, err := d.upgrade(value); err != nil {
			r.Error = "converting to a served version: " + err.Error()
		} else if upgraded != nil {
			r.Object, r.ConvertedFrom = upgraded, from
		}
	case len(value) == 0:
		r.Encoding = "none"
	case isText(value):
		r.Encoding = "text"
	default:
		r.Encoding = "binary"
	}
	return r
}

func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x09 || (c > 0x0d && c < 0x20) {
			return false
		}
	}
	return true
}

// readSnapshot returns the newest version of every live key, as etcd's mvcc store keeps them:
// bucket "key" maps a revision (8-byte main, '_', 8-byte sub, 't' for a deletion) to a KeyValue.
func readSnapshot(path, prefix string) ([]*mvccpb.KeyValue, int64, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	latest := map[string]*mvccpb.KeyValue{}
	var newest int64
	err = db.View(func(tx *bolt.Tx) error {
		bucket := tx.Bucket([]byte("key"))
		if bucket == nil {
			return fmt.Errorf("%s has no 'key' bucket: not an etcd v3 database", path)
		}
		return bucket.ForEach(func(rev, raw []byte) error {
			if len(rev) >= 8 {
				if main := int64(binary.BigEndian.Uint64(rev[:8])); main > newest {
					newest = main
				}
			}
			kv := &mvccpb.KeyValue{}
			if err := kv.Unmarshal(raw); err != nil {
				return fmt.Errorf("revision %x: %w", rev, err)
			}
			key := string(kv.Key)
			if !strings.HasPrefix(key, prefix) {
				return nil
			}
			if len(rev) == 18 && rev[17] == 't' {
				delete(latest, key)
				return nil
			}
			latest[key] = kv
			return nil
		})
	})
	if err != nil {
		return nil, 0, err
	}
	out := make([]*mvccpb.KeyValue, 0, len(latest))
	for _, kv := range latest {
		out = append(out, kv)
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].Key) < string(out[j].Key) })
	return out, newest, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubebook-decode snapshot -file X.db [-prefix P] [-keys-only] | values")
		os.Exit(2)
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	enc := json.NewEncoder(out)
	d := newDecoder()
	switch os.Args[1] {
	case "snapshot":
		flags := flag.NewFlagSet("snapshot", flag.ExitOnError)
		file := flags.String("file", "", "snapshot .db file")
		prefix := flags.String("prefix", "/registry/", "only keys with this prefix")
		keysOnly := flags.Bool("keys-only", false, "key metadata without decoding values")
		_ = flags.Parse(os.Args[2:])
		kvs, _, err := readSnapshot(*file, *prefix)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubebook-decode:", err)
			out.Flush()
			os.Exit(1)
		}
		for _, kv := range kvs {
			var r record
			if *keysOnly {
				r = record{Key: string(kv.Key), Size: len(kv.Value), Encoding: "none"}
			} else {
				r = d.decode(string(kv.Key), kv.Value)
			}
			r.CreateRevision, r.ModRevision, r.Version = kv.CreateRevision, kv.ModRevision, kv.Version
			_ = enc.Encode(r)
		}
	case "values":
		in := bufio.NewScanner(os.Stdin)
		in.Buffer(make([]byte, 1<<20), 64<<20)
		for in.Scan() {
			var item struct{ Key, Value string }
			if err := json.Unmarshal(in.Bytes(), &item); err != nil {
				_ = enc.Encode(record{Error: "bad input line: " + err.Error()})
				continue
			}
			value, err := base64.StdEncoding.DecodeString(item.Value)
			if err != nil {
				_ = enc.Encode(record{Key: item.Key, Error: "value is not base64"})
				continue
			}
			_ = enc.Encode(d.decode(item.Key, value))
		}
	default:
		fmt.Fprintf(os.Stderr, "kubebook-decode: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}
