"""Our own charts: lint clean, and their values schemas reject what would break a cluster."""

from __future__ import annotations

import subprocess

import pytest

from polyp_gitops.render import helm_template
from polyp_gitops.repo import ENVIRONMENTS, INSTALL_ROOT, PROMOTION_FILE, own_charts
from polyp_gitops.tools import ToolError, run

OWN_CHARTS = own_charts(INSTALL_ROOT)


@pytest.mark.parametrize("chart", [*OWN_CHARTS, "polyp-lib"])
def test_chart_lints_strictly(repo_root, chart):
    path = repo_root / "charts" / chart
    if chart != "polyp-lib":
        run(["helm", "dependency", "build", str(path)])
    output = run(["helm", "lint", "--strict", str(path)])
    assert "1 chart(s) linted, 0 chart(s) failed" in output


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_app_of_apps_and_root_charts_lint_strictly(repo_root, env):
    listed = ["-f", str(repo_root / PROMOTION_FILE)]
    for chart, extra in (
        ("apps", [*listed, "-f", str(repo_root / "environments" / env / "values.yaml")]),
        ("bootstrap/root", listed),
    ):
        output = run(
            [
                "helm",
                "lint",
                "--strict",
                str(repo_root / chart),
                *extra,
                "--set",
                f"repoURL=https://example.com/r.git,environment={env}",
            ]
        )
        assert "0 chart(s) failed" in output


@pytest.mark.parametrize(
    "chart, values, complaint",
    [
        ("control-service", {"image": {"tag": "latest"}}, "image.tag"),
        ("control-service", {"alerts": {"diceFloor": 1.5}}, "diceFloor"),
        ("control-service", {"replicas": 2}, "replicas"),  # typo of replicaCount
        ("control-service", {"config": {"trainingData": "kvasir=/data/kvasir"}}, "trainingData"),  # a pod-local path
        ("frontend", {"image": {"tag": "main"}}, "image.tag"),
        ("inference", {"model": {"version": "v2"}}, "model.version"),
        ("inference", {"model": {"sha256": "abc123"}}, "model.sha256"),
        ("inference", {"model": {"version": "3", "requireSha256": True}}, "model.sha256"),  # staging's and prod's rule
        ("inference", {"triton": {"image": {"tag": "latest"}}}, "triton.image.tag"),
        ("training", {"storage": {"checkpointUri": "/data"}}, "checkpointUri"),
        ("database", {"instances": 0}, "instances"),
        ("database", {"databases": [{"name": "mlflow", "owner": "postgres"}]}, "owner"),  # CloudNativePG's superuser
        ("database", {"databases": [{"name": "a", "owner": "a"}, {"name": "b", "owner": "b_c"}]}, "owner"),  # a Secret's name
        ("database", {"databases": [{"name": "a", "owner": "x"}, {"name": "b", "owner": "x"}]}, "owner x owns two databases"),
    ],
)
def test_values_schema_rejects_bad_values(repo_root, chart, values, complaint):
    with pytest.raises(ToolError) as failure:
        helm_template(repo_root / "charts" / chart, chart, "polyp", values=values)
    assert complaint.split(".")[-1] in str(failure.value)


def test_training_data_may_name_several_datasets(repo_root):
    both = "kvasir=s3://datasets/kvasir-seg clinicdb=s3://datasets/cvc-clinicdb"
    rendered = helm_template(
        repo_root / "charts" / "control-service", "control-service", "polyp", values={"config": {"trainingData": both}}
    )
    assert both in str(rendered)


def test_apps_chart_demands_repo_and_environment(repo_root):
    listed = [repo_root / PROMOTION_FILE]
    with pytest.raises(ToolError, match="repoURL is required"):
        helm_template(repo_root / "apps", "root", "argocd", listed, parameters=[{"name": "environment", "value": "dev"}])
    with pytest.raises(ToolError, match=f"environment must be one of {', '.join(ENVIRONMENTS)}"):
        helm_template(
            repo_root / "apps",
            "root",
            "argocd",
            listed,
            parameters=[{"name": "repoURL", "value": "https://x"}, {"name": "environment", "value": "qa"}],
        )


def test_each_database_has_its_own_owner_and_the_control_service_holds_only_its_own(rendered):
    """MLflow's role cannot touch the scheduler's pickled jobs, nor the control service's MLflow's runs."""
    objects = rendered["dev"].all_objects()
    cluster = next(o for o in objects if o["kind"] == "Cluster" and o["metadata"]["name"] == "platform-db")
    databases = {o["spec"]["name"]: o["spec"]["owner"] for o in objects if o["kind"] == "Database"}
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": "mlflow", "owner": "mlflow"}
    assert databases == {"scheduler": "scheduler"}
    assert cluster["spec"]["managed"]["roles"] == [
        {"name": "scheduler", "ensure": "present", "login": True, "passwordSecret": {"name": "platform-db-scheduler"}}
    ]
    control = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "control-service")
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for c in control["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", []) if e["name"].startswith("DB_")}  # fmt: skip
    assert refs == {"platform-db-scheduler"}
    mlflow = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "mlflow")
    assert "platform-db-app" in repr(mlflow) and "platform-db-scheduler" not in repr(mlflow)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_mlflow_runs_its_auth_app_and_each_client_holds_its_own_user(rendered, env):
    """No anonymous access to MLflow: the server runs MLflow's basic-auth app, its init container creates the
    training and control-service users from their Secrets, and each client sends only its own user."""
    objects = rendered[env].all_objects()

    def deployment(name: str) -> dict:
        return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)["spec"]["template"]["spec"]

    def credentials(container: dict) -> set[str]:
        refs = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") for e in container.get("env", [])}
        return {refs.get("MLFLOW_TRACKING_USERNAME"), refs.get("MLFLOW_TRACKING_PASSWORD")}

    mlflow = deployment("mlflow")
    [server] = mlflow["containers"]
    assert "--app-name=basic-auth" in server["args"]
    [users] = [c for c in mlflow["initContainers"] if c["name"] == "auth-config-and-users"]
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in users["env"] if "valueFrom" in e}
    assert secrets == {"platform-db-app", "mlflow-admin", "mlflow-training", "mlflow-control-service"}
    [control] = deployment("control-service")["containers"]
    assert credentials(control) == {"mlflow-control-service"}
    # Training is granted MANAGE on the very model the control service serves and watches.
    model = {e["name"]: e.get("value") for e in control["env"]}["MODEL_NAME"]
    assert {e["name"]: e.get("value") for e in users["env"]}["MODEL_NAME"] == model
    raycluster = next(o for o in objects if o["kind"] == "RayCluster")
    ray_pods = [raycluster["spec"]["headGroupSpec"], *raycluster["spec"]["workerGroupSpecs"]]
    for group in ray_pods:
        ray = next(c for c in group["template"]["spec"]["containers"] if c["name"].startswith("ray-"))
        assert credentials(ray) == {"mlflow-training"}


def test_prod_runs_highly_available(rendered):
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered["prod"].all_objects()}
    assert objects[("Deployment", "control-service")]["spec"]["replicas"] >= 2
    assert ("PodDisruptionBudget", "control-service") in objects
    assert objects[("Cluster", "platform-db")]["spec"]["instances"] == 3
    assert ("PodDisruptionBudget", "control-service") not in {
        (o["kind"], o["metadata"]["name"]) for o in rendered["dev"].all_objects()
    }


def _triton_start(repo_root, values: dict) -> str:
    [runtime] = [
        o
        for o in helm_template(repo_root / "charts" / "inference", "inference", "polyp", values=values)
        if o["kind"] == "ServingRuntime"
    ]
    [container] = runtime["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    return container["args"][0]


def _run_start(script: str, store, tmp_path) -> subprocess.CompletedProcess:
    """The container's start script under a real sh, a fake tritonserver printing its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "tritonserver").write_text('#!/bin/sh\necho "tritonserver $*"\n')
    (bin_dir / "tritonserver").chmod(0o755)
    return subprocess.run(
        ["/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "MODEL_STORE": str(store)},
    )


def test_triton_starts_only_on_the_pinned_published_version(repo_root, tmp_path):
    """model.version selects configs/pin-N.pbtxt (written by export); a pin that is not published, or
    bytes other than model.sha256, keep Triton from starting rather than serving the newest version."""
    import hashlib

    from polyp_core.repository import pin_config_name, triton_config
    from polyp_dev.onnx_models import constant_model
    from polyp_train.export import publish

    store = tmp_path / "store"
    config = triton_config("polyp-segmenter", 64, "constant")
    for version in (1, 2):
        model = constant_model(tmp_path / f"v{version}.onnx", logit=float(version))
        publish(str(store), "polyp-segmenter", version, model.read_bytes(), config)
    started = _run_start(_triton_start(repo_root, {"model": {"version": "1"}}), store, tmp_path)
    assert started.returncode == 0, started.stderr
    assert f"--model-config-name={pin_config_name(1)}" in started.stdout and f"--model-store={store}" in started.stdout

    ahead = _run_start(_triton_start(repo_root, {"model": {"version": "3"}}), store, tmp_path)
    assert ahead.returncode == 1 and "version 3 is pinned but not published" in ahead.stderr
    assert "tritonserver" not in ahead.stdout

    digest = hashlib.sha256((store / "polyp-segmenter" / "2" / "model.onnx").read_bytes()).hexdigest()
    same = _run_start(_triton_start(repo_root, {"model": {"version": "2", "sha256": digest}}), store, tmp_path)
    assert same.returncode == 0 and "--model-config-name=pin-2" in same.stdout
    other = _run_start(_triton_start(repo_root, {"model": {"version": "1", "sha256": digest}}), store, tmp_path)
    assert other.returncode == 1 and "is not the pinned artifact" in other.stderr


def test_inference_canary_only_where_kserve_can_split_traffic(repo_root):
    chart = repo_root / "charts" / "inference"
    with pytest.raises(ToolError, match="needs deploymentMode Serverless"):
        helm_template(chart, "inference", "polyp", values={"canary": {"trafficPercent": 10}})
    [isvc] = [
        o
        for o in helm_template(
            chart, "inference", "polyp", values={"deploymentMode": "Serverless", "canary": {"trafficPercent": 10}}
        )
        if o["kind"] == "InferenceService"
    ]
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    [isvc] = [o for o in helm_template(chart, "inference", "polyp") if o["kind"] == "InferenceService"]
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert isvc["spec"]["predictor"]["model"]["runtimeVersion"] == "25.06-py3"
    assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "v2"


def test_inference_backend_rayserve_renders_a_valid_rayservice_serving_the_pin(repo_root):
    """backend: rayserve replaces the InferenceService with a KubeRay RayService whose Serve config the
    real Ray Serve schema and our application builder both accept, pinned to model.version."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from polyp_gitops.validate import kubeconform
    from polyp_rayserve import build

    digest = "ab" * 32
    objects = helm_template(
        repo_root / "charts" / "inference",
        "inference",
        "polyp",
        values={"backend": "rayserve", "model": {"version": "7", "sha256": digest}, "replicas": {"min": 1, "max": 3}},
    )
    kinds = {o["kind"] for o in objects}
    assert "RayService" in kinds and not kinds & {"InferenceService", "ServingRuntime"}
    report = kubeconform(objects)
    assert report.ok, report.problems
    [service] = [o for o in objects if o["kind"] == "RayService"]
    config = ServeDeploySchema.parse_obj(yaml.safe_load(service["spec"]["serveConfigV2"]))
    [app] = config.applications
    assert app.import_path == "polyp_rayserve:build" and app.route_prefix == "/polyp-segmenter"
    assert app.args["version"] == "7" and app.args["sha256"] == digest and app.args["repo"] == "s3://models/triton"
    [deployment] = app.deployments
    assert deployment.autoscaling_config["max_replicas"] == 3
    build(app.args)  # the builder takes exactly these arguments

    triton = {o["kind"] for o in helm_template(repo_root / "charts" / "inference", "inference", "polyp")}
    assert {"InferenceService", "ServingRuntime"} <= triton and "RayService" not in triton
    with pytest.raises(ToolError, match="backend"):
        helm_template(repo_root / "charts" / "inference", "inference", "polyp", values={"backend": "torchserve"})
