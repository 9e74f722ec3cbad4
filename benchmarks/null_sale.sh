#!/bin/bash
# Instructions per null sale (the simulation layer alone; see benchmarks/null_sale.py), from a worktree root.
# usage: bash benchmarks/null_sale.sh [N1=1000] [N2=3000]
N1=${1:-1000}; N2=${2:-3000}
PY=${PYTHON:-$(python3 -c "import sys; print(sys.executable)")}
ir() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$PY" -c "
import sys; sys.path[:0] = ['benchmarks', '.']
import null_sale
assert null_sale.null_sales($1) == $1" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
a=$(ir $N1); b=$(ir $N2)
python3 -c "print(f'instructions per null sale ($N1->$N2): {($b-$a)/($N2-$N1):,.0f}')"
