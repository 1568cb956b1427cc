"""Render every kustomize entry point (``kustomize/**`` and ``manifests/**`` folders holding a
``kustomization.yaml``) with ``kubectl kustomize`` and validate every object it yields; a broken
entry point, an invalid object, or nothing to render fails.

- core kinds: ``kubernetes-validate``, strict (unknown fields are errors), for each of :data:`K8S_VERSIONS`;
- ``InferenceService`` and ``ServingRuntime``: the KServe SDK's typed models, walked strictly
  through their ``openapi_types`` / ``attribute_map`` (the SDK itself drops unknown keys silently);
- ``RayJob``, ``ServiceMonitor``, ``PodMonitor``, ``PrometheusRule``: our JSON schemas in
  ``manifests/schemas`` (written from the KubeRay and prometheus-operator API references), and each
  RayJob pod template as a core ``PodTemplate``.

Overlays take credentials from git-ignored ``secrets/*.env`` files; to render where those do not
exist (CI, a fresh checkout) the tree is copied and each missing file is made from its committed
``*.env.example``. Nothing is applied anywhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TOPS = ("kustomize", "manifests")
# the oldest Kubernetes these manifests are for (PodSecurity labels, seccompProfile, NetworkPolicy) and
# the newest kubernetes-validate knows: a field removed or added in between fails one of them
K8S_VERSIONS = ("1.30.0", "1.37.0")
SCHEMAS = REPO / "manifests" / "schemas"
CRD_SCHEMAS = {
    ("ray.io/v1", "RayJob"): "rayjob.schema.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitors.schema.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitors.schema.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.schema.yaml",
}
KSERVE_MODELS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
}
# values the KServe SDK types as plain strings but the controller accepts only from a set
KSERVE_ENUMS = {"protocolVersion": {"v1", "v2", "grpc-v1", "grpc-v2"},
                "protocolVersions": {"v1", "v2", "grpc-v1", "grpc-v2"},
                "mode": {"all", "request", "response"}}
_PRIMITIVES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
               "datetime": (str,), "date": (str,)}


def entry_points(root: Path = REPO) -> list[Path]:
    """Folders ``kubectl kustomize`` builds; a ``kind: Component`` is built only inside overlays."""
    found = []
    for top in TOPS:
        found += sorted(p.parent for p in (root / top).rglob("kustomization.yaml")
                        if yaml.safe_load(p.read_text()).get("kind") != "Component")
    return found


def _kubectl() -> str:
    return shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")


@contextmanager
def render_tree(root: Path = REPO) -> Iterator[Path]:
    """A copy of ``root``'s manifest folders where every missing ``*.env`` comes from its example."""
    with tempfile.TemporaryDirectory(prefix="clinops-manifests-") as tmp:
        for top in TOPS:
            if (root / top).is_dir():
                shutil.copytree(root / top, Path(tmp) / top)
        for example in Path(tmp).rglob("*.env.example"):
            target = example.with_suffix("")
            if not target.exists():
                shutil.copyfile(example, target)
        yield Path(tmp)


def render(folder: Path) -> str:
    result = subprocess.run([_kubectl(), "kustomize", str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {folder.name} failed:\n{result.stderr}")
    return result.stdout


def render_all(root: Path = REPO) -> dict[str, list[dict]]:
    """Every entry point's objects, by its path relative to ``root``."""
    out = {}
    with render_tree(root) as tree:
        for folder in entry_points(tree):
            name = str(folder.relative_to(tree))
            try:
                out[name] = [d for d in yaml.safe_load_all(render(folder)) if d]
            except RuntimeError as err:
                raise RuntimeError(f"{name}: {err}") from None
    return out


# --- strict KServe typed models -------------------------------------------------------------


def _model_class(name: str):
    import kserve.models
    import kubernetes.client.models

    cls = getattr(kserve.models, name, None) or getattr(kubernetes.client.models, name, None)
    if cls is None:
        raise LookupError(f"no SDK model {name}")
    return cls


def model_problems(value, type_name: str, path: str = "") -> list[str]:
    """What in ``value`` does not fit the SDK type ``type_name`` (unknown fields, wrong types)."""
    if type_name == "object":
        return []
    if m := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in model_problems(v, m.group(1), f"{path}[{i}]")]
    if m := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in model_problems(v, m.group(1), f"{path}.{k}")]
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name]) and not (type_name != "bool" and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
    cls = _model_class(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name}), got {type(value).__name__}"]
    fields = {key: attr for attr, key in cls.attribute_map.items()}
    problems = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            problems.append(f"{where}: unknown field of {type_name}")
            continue
        if key in KSERVE_ENUMS and type_name.startswith(("V1beta1", "V1alpha1")):
            allowed = KSERVE_ENUMS[key]
            bad = [v for v in (item if isinstance(item, list) else [item]) if v not in allowed]
            if bad:
                problems.append(f"{where}: {bad[0]!r} is not one of {sorted(allowed)}")
        problems += model_problems(item, cls.openapi_types[fields[key]], where)
    return problems


# --- dispatch ---------------------------------------------------------------------------------


@cache
def _schema(name: str) -> dict:
    return yaml.safe_load((SCHEMAS / name).read_text())


def _core_problems(obj: dict) -> list[str]:
    """Strict validation against each of :data:`K8S_VERSIONS`; a problem names the versions it has."""
    import kubernetes_validate

    found: dict[str, list[str]] = {}
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            found.setdefault(f"no schema for {obj.get('apiVersion')} {obj.get('kind')}", []).append(version)
        except kubernetes_validate.ValidationError as err:
            where = "/".join(str(p) for p in err.absolute_path) or "(top)"
            found.setdefault(f"{where}: {err.message}", []).append(version)
    return [f"{problem} (Kubernetes {', '.join(versions)})" for problem, versions in found.items()]


def _ray_pod_templates(obj: dict) -> Iterator[tuple[str, dict]]:
    cluster = obj.get("spec", {}).get("rayClusterSpec", {})
    if "template" in cluster.get("headGroupSpec", {}):
        yield "spec.rayClusterSpec.headGroupSpec.template", cluster["headGroupSpec"]["template"]
    for i, group in enumerate(cluster.get("workerGroupSpecs", [])):
        if "template" in group:
            yield f"spec.rayClusterSpec.workerGroupSpecs[{i}].template", group["template"]
    if "submitterPodTemplate" in obj.get("spec", {}):
        yield "spec.submitterPodTemplate", obj["spec"]["submitterPodTemplate"]


def _short(err) -> str:
    """jsonschema's message, or, where it quotes the whole instance, the rule that failed."""
    if len(err.message) <= 160:
        return err.message
    return f"fails the schema's {err.validator} rule {json.dumps(err.validator_value, sort_keys=True)}"


def problems(obj: dict) -> list[str]:
    """Everything wrong with one rendered object (empty: valid)."""
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
        return ["not a Kubernetes object (apiVersion and kind are required)"]
    key = (obj["apiVersion"], obj["kind"])
    if key in KSERVE_MODELS:
        found = model_problems(obj, KSERVE_MODELS[key])
        if not obj.get("metadata", {}).get("name"):
            found.append("metadata.name: required")
        return found
    if key in CRD_SCHEMAS:
        import jsonschema

        validator = jsonschema.Draft202012Validator(_schema(CRD_SCHEMAS[key]))
        found = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {_short(e)}" for e in validator.iter_errors(obj)]
        if key == ("ray.io/v1", "RayJob"):
            for where, template in _ray_pod_templates(obj):
                wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
                found += [f"{where}: {p}" for p in _core_problems(wrapped)]
        return found
    return _core_problems(obj)


def validate_all(rendered: dict[str, list[dict]]) -> list[str]:
    """``entry point: Kind/name: problem`` lines for every invalid object."""
    lines = []
    for point, objects in rendered.items():
        if not objects:
            lines.append(f"{point}: renders no objects")
        for obj in objects:
            name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
            lines += [f"{point}: {name}: {p}" for p in problems(obj)]
    return lines


def main(root: Path = REPO) -> int:
    if not entry_points(root):
        print(f"no kustomize entry points under {', '.join(TOPS)}", file=sys.stderr)
        return 1
    try:
        rendered = render_all(root)
    except RuntimeError as err:
        print(f"FAIL {err}", file=sys.stderr)
        return 1
    bad = validate_all(rendered)
    for point, objects in rendered.items():
        status = "FAIL" if any(line.startswith(f"{point}: ") for line in bad) else "ok  "
        print(f"{status} {point} ({len(objects)} objects)")
    for line in bad:
        print(f"  {line}", file=sys.stderr)
    return 1 if bad else 0
