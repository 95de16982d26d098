#!/usr/bin/env bash
# ab_kernels.sh REV [THREADS SECONDS N_TOK...]: paired A/B of the AVX-512 kernels of the
# working tree (new) against those of git revision REV (old; or REV a kernels_avx512.c file,
# e.g. a saved variant), in one process
# (tests/ab/ab_kernels.c says how). Builds the tree's objects with `make` into $BUILD
# (default build), REV's kernels_avx512.c into a scratch directory, and links both.
# Example: bash tests/ab_kernels.sh HEAD 2 10 16 32 512      (WFMT=bf16 for BF16 weights)
# AB_SETS=OLD,NEW picks the sets compared by name (default avx512,avx512); e.g. the tree's
# AMX set against its plain AVX-512 one: WFMT=bf16 AB_SETS=avx512,amx ab_kernels.sh <tree file>
set -euo pipefail
rev=${1:?usage: ab_kernels.sh REV [THREADS SECONDS N_TOK...]}
shift
[ $# -ge 3 ] || set -- 2 10 1 16 32 128 512
BUILD=${BUILD:-build}
make -s BUILD="$BUILD" -j2 "$BUILD/optstudio" >/dev/null
tmp=$(mktemp -d /tmp/ab_kernels.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
if [ -f "$rev" ]; then
	cp "$rev" "$tmp/kernels_old.c"
else
	git show "$rev:core/cpu/kernels_avx512.c" >"$tmp/kernels_old.c"
fi
flags=(-std=gnu11 -O2 -pthread -I.)
# the old file's exported names renamed, so both sets link into one program
gcc "${flags[@]}" -Dcpu_kernels_avx512=cpu_kernels_avx512_old -Dcpu_kernels_amx=cpu_kernels_amx_old \
	-Dcpu_kernels_avx512_bi=cpu_kernels_avx512_bi_old -Dcpu_kernels_amx_bi=cpu_kernels_amx_bi_old \
	-Dcpu_avx512_pack_panel32=cpu_avx512_pack_panel32_old \
	-Dcpu_avx512_transpose16x16=cpu_avx512_transpose16x16_old \
	-c "$tmp/kernels_old.c" -o "$tmp/kernels_old.o"
gcc "${flags[@]}" -c tests/ab/ab_kernels.c -o "$tmp/ab_kernels.o"
gcc -o "$tmp/ab_kernels" "$tmp/ab_kernels.o" "$tmp/kernels_old.o" "$BUILD"/core/cpu/*.o \
	"$BUILD/core/errors.o" "$BUILD/core/bigalloc.o" -lm -lpthread
"$tmp/ab_kernels" "$@"
