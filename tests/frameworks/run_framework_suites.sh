#!/usr/bin/env bash
# The frameworks' own test suites on statekit: aiogram's tests/test_fsm/ and aiogram-dialog's
# tests/, with their storage swapped for statekit's AiogramStorage over memory, SQLite and Redis
# (and PostgreSQL; STATEKIT_FW_BACKENDS to choose; "url" runs on any statekit URL given in STATEKIT_FW_URL,
# e.g. PostgreSQL). The sdists are fetched from PyPI with pip into a temporary
# directory (never committed): aiogram at the version installed here (what pip resolved for the
# `aiogram` extra), aiogram-dialog pinned below. Our conftests replace / add to theirs
# (conftest_aiogram.py, conftest_dialog.py); the only tests allowed to fail are listed by name,
# with the reason, in their TOLERATED tables (tests that inspect aiogram's MemoryStorage itself).
# aiogram-dialog's intent ids are made unique in conftest_dialog.py (its own generator collides
# 1 time in 100 within one second), rather than retrying flaky tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dialog_version="${AIOGRAM_DIALOG_VERSION:-2.6.0}"
backends="${STATEKIT_FW_BACKENDS:-memory sqlite redis postgres}"
aiogram_version="$(python -c 'import aiogram; print(aiogram.__version__)')"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "frameworks: aiogram $aiogram_version, aiogram-dialog $dialog_version (sdists from PyPI)"
python -m pip install -q "aiogram-dialog==$dialog_version" "pytest-repeat==0.9.4"
python -m pip download -q --no-deps --no-binary :all: -d "$work/sdist" \
    "aiogram==$aiogram_version" "aiogram-dialog==$dialog_version"
tar -xzf "$work/sdist/aiogram-$aiogram_version.tar.gz" -C "$work"
tar -xzf "$work/sdist/aiogram_dialog-$dialog_version.tar.gz" -C "$work"

ini='[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
'
# aiogram: only its tests (not its pyproject's pytest settings), our conftest instead of theirs
mkdir -p "$work/run-aiogram"
cp -r "$work/aiogram-$aiogram_version/tests" "$work/run-aiogram/tests"
cp "$here/conftest_aiogram.py" "$work/run-aiogram/tests/conftest.py"
printf '%s' "$ini" >"$work/run-aiogram/pytest.ini"
# aiogram-dialog: its tests, our conftest added at their top
mkdir -p "$work/run-dialog"
cp -r "$work/aiogram_dialog-$dialog_version/tests" "$work/run-dialog/tests"
cp "$here/conftest_dialog.py" "$work/run-dialog/tests/conftest.py"
printf '%s' "$ini" >"$work/run-dialog/pytest.ini"

fsm="$work/run-aiogram/tests/test_fsm"
status=0
for backend in $backends; do
    echo "frameworks: aiogram tests/test_fsm on AiogramStorage over $backend"
    (cd "$work/run-aiogram" && STATEKIT_FW_BACKEND="$backend" PYTHONPATH="$here" \
        python -m pytest -p no:cacheprovider -q -rxXs "$fsm" \
        --ignore="$fsm/storage/test_mongo.py" --ignore="$fsm/storage/test_mongo_mock.py" \
        --ignore="$fsm/storage/test_pymongo.py" --ignore="$fsm/storage/test_pymongo_mock.py" \
        --ignore="$fsm/storage/test_redis_mock.py") || status=1
    echo "frameworks: aiogram-dialog tests on AiogramStorage over $backend"
    (cd "$work/run-dialog" && STATEKIT_FW_BACKEND="$backend" PYTHONPATH="$here" \
        python -m pytest -p no:cacheprovider -q -rxXs tests) || status=1
done
exit "$status"
