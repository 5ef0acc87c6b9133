"""A starting worker warms the typed-text understanding up in the background: the first
patient's message does not pay for loading the language models, and the start does not wait
for them either."""

from __future__ import annotations

import threading

from clinic_bot.bootstrap import build_runtime, install_everything
from clinic_bot.domain.understanding import language
from clinic_bot.worker import Worker


def test_the_whole_app_installs_the_understanding_warm_up():
    from clinic_bot.core.registry import Registry

    registry = Registry()
    install_everything(registry)
    assert [name for name, _ in registry.warm_ups] == ["understanding"]
    assert "at worker start understanding -> clinic_bot.bootstrap.warm_up_understanding" in (
        registry.describe()
    )


def test_worker_start_returns_while_a_warm_up_is_still_running(settings):
    began, release = threading.Event(), threading.Event()

    def slow_warm_up(runtime):
        began.set()
        release.wait(30)

    def install(registry):
        registry.at_worker_start("slow", slow_warm_up)

    runtime = build_runtime(settings, install=install)
    worker = Worker(runtime)
    try:
        worker.start()  # returns although the warm-up blocks
        assert began.wait(10), "the warm-up did not start"
        assert worker.warm_up_threads[0].is_alive()
    finally:
        release.set()
        worker.stop()
        runtime.db.dispose()


def test_worker_start_loads_the_language_models_before_the_first_message(settings):
    language._detector.cache_clear()  # as in a fresh process
    runtime = build_runtime(settings)
    codes = tuple(sorted(set(runtime.profile.languages) | set(language.DECOYS)))
    worker = Worker(runtime)
    try:
        worker.start()
        for thread in worker.warm_up_threads:
            thread.join(30)  # the warm-up's own end, not a fixed pause
        assert language._detector.cache_info().currsize == 1
        loaded = language._detector.cache_info().misses
        assert language._detector(codes) is not None
        assert language.detect("Hola, quiero una cita", runtime.profile.languages) == "es"
        # The patient's message found the models loaded: no new load (a cache miss) for it.
        assert language._detector.cache_info().misses == loaded
    finally:
        worker.stop()
        runtime.db.dispose()
