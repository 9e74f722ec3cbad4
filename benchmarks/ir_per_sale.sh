#!/bin/bash
# Instructions per simulated sale (load-independent, unlike CPU or wall time on a shared box):
# (Ir of N2 sales - Ir of N1 sales) / (N2 - N1) under callgrind, so start-up and set-up cancel out.
# Run from the repository root; needs valgrind.
# usage: bash benchmarks/ir_per_sale.sh [N1=200] [N2=600] [dialect=iso87ascii]
N1=${1:-200}; N2=${2:-600}; D=${3:-iso87ascii}
PY=${PYTHON:-$(python3 -c "import sys; print(sys.executable)")}
ir() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$PY" -c "
import sys; sys.path[:0] = ['benchmarks', '.']
import simulation
simulation.simulated_sales($1, '$D')" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
a=$(ir "$N1"); b=$(ir "$N2")
if [ -z "$a" ] || [ -z "$b" ]; then echo "callgrind gave no instruction count (is valgrind installed?)" >&2; exit 1; fi
python3 -c "print(f'instructions per simulated sale ($D, $N1->$N2): {($b-$a)/($N2-$N1):,.0f}')"
