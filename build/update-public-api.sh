#!/usr/bin/env bash
# Adds every symbol the PublicApiAnalyzer reports as undeclared (RS0016) to PublicAPI.Unshipped.txt
# of the project given. Review the diff: each public symbol is a deliberate decision.
set -euo pipefail
project=${1:?usage: build/update-public-api.sh src/Mesh.Client}
file="$project/PublicAPI.Unshipped.txt"
dotnet build "$project" -nologo -v q -p:BuildProjectReferences=false 2>&1 \
  | grep -oP "error RS0016: Symbol '\K.*(?=' is not part of the declared public API)" \
  | sort -u >> "$file" || true
{ head -n1 "$file"; tail -n +2 "$file" | sort -u; } > "$file.tmp" && mv "$file.tmp" "$file"
