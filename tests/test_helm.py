"""kubebook.helm without a cluster: arguments, masking, error lines, and rendering with the real helm binary."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from kubebook import helm
from kubebook.errors import KubebookError

PASSWORD = "s3cr3t-Hunter2-xyz"

SECRET_MANIFEST = f"""---
# Source: eladmin-web/templates/secret.yaml
apiVersion: v1
kind: Secret
metadata:
  name: web
type: Opaque
data:
  admin-password: "{base64.b64encode(PASSWORD.encode()).decode()}"
stringData:
  extra: "{PASSWORD}"
---
# Source: eladmin-web/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: web
data:
  LOG_LEVEL: info
  DB_PASSWORD: "{PASSWORD}"
---
# Source: eladmin-web/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
"""

# Recorded helm v3.22 stderr, as `helm` prints it on failure.
STDERR_IN_USE = "Error: INSTALLATION FAILED: cannot re-use a name that is still in use\n"
STDERR_WITH_WARNINGS = ("WARNING: Kubernetes configuration file is group-readable. This is insecure. Location: /x\n"
                        "WARNING: Kubernetes configuration file is world-readable. This is insecure. Location: /x\n"
                        "Error: Kubernetes cluster unreachable: context \"nope\" does not exist\n")
STDERR_DEBUG = ("history.go:56: 2026-11-28 [debug] getting history for release web\n"
                "Error: UPGRADE FAILED: template: web/templates/secret.yaml:3:14: executing "
                "\"web/templates/secret.yaml\" at <.Values.x>: password=hunter2 is wrong\n"
                "helm.go:92: 2026-11-28 [debug] trace follows\n")
LINT_CLEAN = "==> Linting ./nginx\n[INFO] Chart.yaml: icon is recommended\n\n1 chart(s) linted, 0 chart(s) failed\n"
LINT_FAILED = ("==> Linting ./broken\n[INFO] Chart.yaml: icon is recommended\n"
               "[ERROR] templates/: template: broken/templates/cm.yaml:5:3: unexpected \"}\" in operand\n"
               "[WARNING] templates/cm.yaml: object name does not conform to Kubernetes naming requirements\n\n"
               "Error: 1 chart(s) linted, 1 chart(s) failed\n")


# ---------------------------------------------------------------- arguments

def test_values_nest_paths_and_maps_as_one_document():
    nested = helm.nest({"replicaCount": 2, "image.tag": "1.27", "ingress.enabled": True, "hosts": "a,b",
                        "nodeSelector": None, "auth": {"adminUser": "admin", "x.y": 1}, "auth.adminPassword": "pw",
                        "list[1].name": "b", "annotations.example\\.com/team": "web",
                        "tolerations": [{"key": "a.b/c"}]})
    assert nested == {"replicaCount": 2, "image": {"tag": "1.27"}, "ingress": {"enabled": True}, "hosts": "a,b",
                      "nodeSelector": None, "auth": {"adminUser": "admin", "x.y": 1, "adminPassword": "pw"},
                      "list": [None, {"name": "b"}], "annotations": {"example.com/team": "web"},
                      "tolerations": [{"key": "a.b/c"}]}


@pytest.mark.parametrize("key", ["", "a=b", "a,b", "a..b", "a[x]"])
def test_value_keys_that_are_not_paths_are_refused(key):
    with pytest.raises(KubebookError, match="not a helm value path"):
        helm.nest({key: 1})


def test_a_value_cannot_go_through_a_scalar():
    with pytest.raises(KubebookError, match="not a map"):
        helm.nest({"image": "nginx", "image.tag": "1.27"})


FAKE_HELM = """#!/bin/sh
# records what helm would get: its arguments, and each values file's mode, directory mode and content
out="$KUBEBOOK_FAKE_HELM_LOG"
printf '%s\\n' "$@" > "$out.argv"
while [ $# -gt 0 ]; do
  if [ "$1" = "--values" ]; then
    stat -c '%a' "$2" > "$out.mode"; stat -c '%a' "$(dirname "$2")" > "$out.dirmode"
    cat "$2" > "$out.values"; echo "$2" > "$out.path"
  fi
  shift
done
"""


def test_values_reach_helm_in_a_private_file_never_on_its_command_line(tmp_path, monkeypatch):
    fake = tmp_path / "helm"
    fake.write_text(FAKE_HELM)
    fake.chmod(0o700)
    log = tmp_path / "call"
    monkeypatch.setenv("KUBEBOOK_FAKE_HELM_LOG", str(log))
    h = helm.Helm(binary=fake, home=tmp_path / "home")
    h.template(tmp_path, "web", values={"auth.adminPassword": PASSWORD, "replicaCount": 2})
    argv = log.with_suffix(".argv").read_text()
    assert PASSWORD not in argv and "--set" not in argv and "--values" in argv
    assert log.with_suffix(".mode").read_text().strip() == "600"
    assert log.with_suffix(".dirmode").read_text().strip() == "700"
    assert yaml.safe_load(log.with_suffix(".values").read_text()) == {"auth": {"adminPassword": PASSWORD},
                                                                     "replicaCount": 2}
    assert not Path(log.with_suffix(".path").read_text().strip()).parent.exists()   # removed after the command
    assert PASSWORD not in helm.describe_values({"auth.adminPassword": PASSWORD})


@pytest.mark.parametrize("name", ["web", "eladmin-web", "a1", "x" * 53])
def test_valid_release_names(name):
    assert helm.validate_release_name(name) == name


@pytest.mark.parametrize("name", ["", "Web", "web_1", "-web", "web-", "x" * 54, "a.b"])
def test_invalid_release_names_are_refused(name):
    with pytest.raises(KubebookError, match="release name"):
        helm.validate_release_name(name)


def _kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "admin.conf"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "admin@lab",
        "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "admin", "user": {"token": "abc"}}],
        "contexts": [{"name": "admin@lab", "context": {"cluster": "lab", "user": "admin"}}]}))
    return path


def test_every_cluster_command_names_kubeconfig_context_and_namespace(tmp_path):
    kubeconfig = _kubeconfig(tmp_path)
    h = helm.Helm(kubeconfig, namespace="luffy", binary=Path("/opt/helm"), home=tmp_path / "h")
    argv = h.command("list", "--all")
    assert argv[:3] == ["/opt/helm", "list", "--all"]
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert flags == {"--kubeconfig": str(kubeconfig), "--kube-context": "admin@lab", "--namespace": "luffy"}
    assert h.command("template", "x", ".", cluster=False) == ["/opt/helm", "template", "x", "."]


def test_explicit_context_wins_and_missing_kubeconfig_is_an_error(tmp_path):
    h = helm.Helm(_kubeconfig(tmp_path), "other", binary=Path("/opt/helm"))
    assert h.cluster_args()[3] == "other"
    with pytest.raises(KubebookError, match="kubeconfig not found"):
        helm.Helm(tmp_path / "missing.conf", binary=Path("/opt/helm")).cluster_args()


def test_helm_directories_are_kubebooks_not_the_users(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEBOOK_CACHE", str(tmp_path / "cache"))
    env = helm.Helm(binary=Path("/opt/helm")).env()
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")):
        assert env[var] == str(tmp_path / "cache" / "helm" / sub)
    assert helm.Helm(binary=Path("/opt/helm"), home=tmp_path / "mine").env()["HELM_CONFIG_HOME"] == \
        str(tmp_path / "mine" / "config")


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("stderr, line", [
    (STDERR_IN_USE, "INSTALLATION FAILED: cannot re-use a name that is still in use"),
    (STDERR_WITH_WARNINGS, 'Kubernetes cluster unreachable: context "nope" does not exist'),
    ("", "helm failed"),
    ("panic: something odd\n", "panic: something odd"),
    ("Error: UPGRADE FAILED: 1 error occurred:\n\t* Deployment.apps \"web\" is invalid: spec.replicas: must be >= 0\n\n",
     'UPGRADE FAILED: 1 error occurred: Deployment.apps "web" is invalid: spec.replicas: must be >= 0'),
])
def test_error_line_is_helms_last_error(stderr, line):
    assert helm.error_line(stderr) == line


def test_error_line_masks_secrets():
    line = helm.error_line(STDERR_DEBUG)
    assert line.startswith("UPGRADE FAILED: template:") and "hunter2" not in line


# ---------------------------------------------------------------- masking

def test_mask_values_masks_secret_looking_keys_at_any_depth():
    values = {"auth": {"adminPassword": PASSWORD, "adminUser": "admin", "apiToken": 12345678},
              "harborAdminPassword": PASSWORD, "secretKey": "0123456789abcdef", "database": {"password": ""},
              "replicaCount": 2, "list": [{"db_passwd": PASSWORD}], "existingSecret": {"name": "x"}}
    masked = helm.mask_values(values)
    text = yaml.safe_dump(masked)
    assert PASSWORD not in text and "12345678" not in text and "0123456789abcdef" not in text
    assert masked["auth"]["adminUser"] == "admin" and masked["replicaCount"] == 2
    assert masked["database"]["password"] == ""          # an unset password is worth seeing
    assert masked["existingSecret"] == {"name": "x"}     # a map under a secret-ish key is walked, not hidden
    assert masked["auth"]["adminPassword"].startswith(helm.MASK)
    assert values["auth"]["adminPassword"] == PASSWORD   # the input is not changed


def test_mask_values_does_not_mask_twice():
    once = helm.mask_values({"password": PASSWORD})
    assert helm.mask_values(once) == once


def test_mask_manifest_hides_secret_data_and_secret_values():
    out = helm.mask_manifest(SECRET_MANIFEST)
    assert PASSWORD not in out and base64.b64encode(PASSWORD.encode()).decode() not in out
    objects = helm.split_manifest(out)
    assert [o["kind"] for o in objects] == ["Secret", "ConfigMap", "Deployment"]
    assert objects[0]["data"]["admin-password"].startswith(helm.MASK)
    assert objects[1]["data"]["LOG_LEVEL"] == "info" and objects[1]["data"]["DB_PASSWORD"].startswith(helm.MASK)
    assert "# Source: eladmin-web/templates/secret.yaml" in out


def test_manifest_diff_shows_changes_but_not_secret_values():
    new = SECRET_MANIFEST.replace("replicas: 2", "replicas: 3").replace(PASSWORD, "another-password-0")
    diff = helm.manifest_diff(SECRET_MANIFEST, new)
    assert "-  replicas: 2" in diff and "+  replicas: 3" in diff
    assert PASSWORD not in diff and "another-password-0" not in diff
    assert helm.manifest_diff(SECRET_MANIFEST, SECRET_MANIFEST) == ""


def test_objects_table_names_kind_and_template():
    table = helm.objects_table(SECRET_MANIFEST)
    assert list(table["kind"]) == ["Secret", "ConfigMap", "Deployment"]
    assert table.loc[2, "template"] == "eladmin-web/templates/deployment.yaml"


def test_describe_change_says_when_an_upgrade_changed_nothing():
    base = {"namespace": "demo", "release": "web", "revision": 4}
    assert helm.describe_change(None).startswith("dry run")
    assert helm.describe_change({**base, "previous_manifest": None, "changed": True}).startswith("installed")
    assert "no manifest change" in helm.describe_change({**base, "previous_manifest": "x", "changed": False})


# ---------------------------------------------------------------- lint

def test_parse_lint_clean_chart():
    table = helm.parse_lint(LINT_CLEAN)
    assert list(table["severity"]) == ["INFO"] and table.loc[0, "chart"] == "./nginx"


def test_parse_lint_failures():
    table = helm.parse_lint(LINT_FAILED)
    assert list(table["severity"]) == ["INFO", "ERROR", "WARNING"]
    assert "unexpected" in table.loc[1, "message"] and table.loc[2, "file"] == "templates/cm.yaml"


def test_parse_lint_no_findings_is_one_ok_row():
    table = helm.parse_lint("==> Linting ./x\n\n1 chart(s) linted, 0 chart(s) failed\n")
    assert list(table["severity"]) == ["OK"]


# ---------------------------------------------------------------- the real helm binary, no cluster

@pytest.fixture(scope="module")
def local_helm(tmp_path_factory):
    return helm.Helm(namespace="demo", home=tmp_path_factory.mktemp("helm-home"))


def test_shipped_chart_renders_with_set_values_and_a_masked_password(local_helm):
    manifest = local_helm.template(helm.CHARTS / "eladmin-web", "web", values={"replicaCount": 3})
    objects = {o["kind"]: o for o in helm.split_manifest(manifest)}
    assert set(objects) == {"Secret", "ConfigMap", "Service", "Deployment"}
    assert objects["Deployment"]["spec"]["replicas"] == 3
    generated = base64.b64decode(objects["Secret"]["data"]["admin-password"]).decode()
    assert len(generated) == 20
    shown = helm.safe_manifest(manifest)
    assert generated not in shown and objects["Secret"]["data"]["admin-password"] not in shown


def test_the_admin_password_value_goes_into_the_charts_secret(local_helm):
    manifest = local_helm.template(helm.CHARTS / "eladmin-web", "web", values={"auth.adminPassword": PASSWORD})
    secret = next(o for o in helm.split_manifest(manifest) if o["kind"] == "Secret")
    assert base64.b64decode(secret["data"]["admin-password"]).decode() == PASSWORD
    deployment = next(o for o in helm.split_manifest(manifest) if o["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "web-eladmin-web",
                                                                     "key": "admin-password"}}} in env
    assert PASSWORD not in helm.safe_manifest(manifest)


def test_template_tour_renders_each_idea(local_helm):
    control = helm.split_manifest(helm.render_one(local_helm, helm.TOUR, "control.yaml", "tour",
                                                  values={"ingress.enabled": True}))[0]["data"]
    assert control["mug"] == "true" and control["port-1"] == "metrics=9113" and "ingress-host" in control
    pod = helm.split_manifest(helm.render_one(local_helm, helm.TOUR, "toyaml.yaml", "tour",
                                              values={"nodeSelector": None}))[0]
    assert "nodeSelector" not in pod["spec"]
    labels = helm.split_manifest(helm.render_one(local_helm, helm.TOUR, "define-include.yaml", "tour"))[0]
    assert labels["metadata"]["labels"]["app.kubernetes.io/instance"] == "tour"


def test_set_wins_over_values_file(local_helm, tmp_path):
    chart = local_helm.create("nginx", tmp_path)
    assert local_helm.create("nginx", tmp_path) == chart      # an existing chart is kept
    values = helm.write_values_file(tmp_path / "v.yaml", {"replicaCount": 3, "image": {"tag": "1.25"}})
    assert values.stat().st_mode & 0o777 == 0o600
    table = helm.precedence(local_helm, chart, "nginx", values_file=values,
                            values={"replicaCount": 2, "image.tag": "alpine"})
    assert list(table["replicas"]) == [1, 3, 2, 2]
    assert list(table["image"])[1:] == ["nginx:1.25", "nginx:alpine", "nginx:alpine"]
    layout = set(helm.chart_layout(chart)["path"])
    assert {"Chart.yaml", "values.yaml", "templates/", "templates/_helpers.tpl"} <= layout


def test_shipped_charts_lint_without_errors(local_helm):
    for chart in (helm.CHARTS / "eladmin-web", helm.TOUR):
        table = local_helm.lint(chart)
        assert not (table["severity"] == "ERROR").any(), table


def test_helm_failure_is_one_clear_line(local_helm, tmp_path):
    with pytest.raises(helm.HelmError) as caught:
        local_helm.template(tmp_path / "no-such-chart", "web")
    assert str(caught.value) == f'helm template: path "{tmp_path / "no-such-chart"}" not found'
    assert caught.value.returncode == 1 and caught.value.command[1] == "template"


# ---------------------------------------------------------------- OCI: helm push/pull to a loopback registry

PUSH_OUTPUT = ("Pushed: 127.0.0.1:41677/luffy/eladmin-web:0.1.0\n"
               "Digest: sha256:f1c3a4db5bc78cf5a070695583c08656315e3098e785d38835133f895d23940d\n")


def test_push_output_is_parsed():
    assert helm.pushed_or_pulled(PUSH_OUTPUT, "Pushed") == {
        "reference": "127.0.0.1:41677/luffy/eladmin-web:0.1.0", "repository": "luffy/eladmin-web", "tag": "0.1.0",
        "digest": "sha256:f1c3a4db5bc78cf5a070695583c08656315e3098e785d38835133f895d23940d"}
    with pytest.raises(helm.HelmError, match="unexpected output"):
        helm.pushed_or_pulled("Pushed: x\n", "Pushed")


def test_push_needs_an_oci_reference(local_helm, tmp_path):
    with pytest.raises(KubebookError, match="oci://"):
        local_helm.push(tmp_path / "x.tgz", "https://charts.example/luffy")


def test_harbor_values_are_masked_and_explained():
    from kubebook.helm.registry import HARBOR_VALUES, harbor_values_table
    table = harbor_values_table().set_index("path")
    assert HARBOR_VALUES["harborAdminPassword"] not in table.to_string()
    assert table.loc["harborAdminPassword", "value"].startswith(helm.MASK)
    assert table.loc["externalURL", "value"] == "https://harbor.luffy.com"
    assert table.loc["persistence.resourcePolicy", "why it matters"]


def test_registry_listens_on_loopback_only(tmp_path):
    from kubebook.helm.registry import LocalRegistry
    with pytest.raises(KubebookError, match="not a loopback IP address"):
        LocalRegistry.start(tmp_path / "blobs", address="0.0.0.0:0")


def test_push_pull_round_trip_through_a_local_registry(local_helm, tmp_path):
    from kubebook.helm.registry import LocalRegistry
    with LocalRegistry.started(tmp_path / "blobs") as registry:
        assert registry.address.startswith("127.0.0.1:")
        package = local_helm.package(helm.CHARTS / "eladmin-web", tmp_path / "packages")
        assert package.name == "eladmin-web-0.1.0.tgz"
        pushed = local_helm.push(package, registry.oci("luffy"), plain_http=True)
        assert (pushed["repository"], pushed["tag"]) == ("luffy/eladmin-web", "0.1.0")
        assert local_helm.push(package, registry.oci("luffy"), plain_http=True)["digest"] == pushed["digest"]
        assert registry.catalog() == ["luffy/eladmin-web"]
        tags = registry.tags("luffy/eladmin-web")
        assert list(tags["tag"]) == ["0.1.0"] and tags.loc[0, "digest"] == pushed["digest"]
        assert tags.loc[0, "config"] == "application/vnd.cncf.helm.config.v1+json"
        pulled = local_helm.pull(registry.oci("luffy/eladmin-web"), tmp_path / "pulled", version="0.1.0",
                                 plain_http=True)
        assert Path(pulled["path"]).read_bytes() == package.read_bytes()
        assert local_helm.show_chart(registry.oci("luffy/eladmin-web"), version="0.1.0",
                                     plain_http=True)["name"] == "eladmin-web"
        with pytest.raises(helm.HelmError, match="helm pull: .*404"):
            local_helm.pull(registry.oci("luffy/missing"), tmp_path / "pulled", plain_http=True)
        pid = registry.pid
    assert not registry.running and registry.process.returncode is not None and registry.pid == pid
