"""docs/scaling.md: its Kubernetes manifests are valid YAML of the kinds it says,
and its Python snippet compiles and imports only names that exist."""
import ast
import importlib
import pathlib
import re

import yaml

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "scaling.md"


def _block(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {marker} -->\s*```yaml\n(.*?)```\s*<!-- /{marker} -->", text, re.S)
    assert m, f"no ```yaml block between <!-- {marker} --> markers in {DOC.name}"
    return m.group(1)


def test_tfjob_manifest_is_valid_yaml_with_chief_and_workers():
    docs = list(yaml.safe_load_all(_block("tfjob-yaml")))
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "TFJob"]
    specs = docs[1]["spec"]["tfReplicaSpecs"]
    assert set(specs) == {"Chief", "Worker"}
    for role, spec in specs.items():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "tensorflow", role  # the training operator's required name
        assert "--train.strategy=multi_worker" in container["command"]
        assert any(c.startswith("--train.checkpoint_dir=/mnt/tfrec/") for c in container["command"])
        assert container["volumeMounts"][0]["mountPath"] == "/mnt/tfrec"
        claim = spec["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
        assert claim == docs[0]["metadata"]["name"]
    # The operator sets TF_CONFIG itself: the manifest must not.
    assert "TF_CONFIG" not in _block("tfjob-yaml")


def test_serving_manifests_are_valid_yaml_and_consistent():
    config_map, deployment, service = yaml.safe_load_all(_block("serving-yaml"))
    assert (config_map["kind"], deployment["kind"], service["kind"]) == ("ConfigMap", "Deployment", "Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("tensorflow/serving")
    assert "--model_config_file=/config/models.config" in container["args"]
    name = re.search(r'name: "(\w+)"', config_map["data"]["models.config"]).group(1)
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{name}"
    assert deployment["spec"]["replicas"] > 1


def test_python_snippet_compiles_and_its_imports_exist():
    text = DOC.read_text(encoding="utf-8")
    snippets = re.findall(r"```python\n(.*?)```", text, re.S)
    assert snippets, "no python snippet in docs/scaling.md"
    for code in snippets:
        tree = ast.parse(code)
        compile(tree, str(DOC), "exec")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
