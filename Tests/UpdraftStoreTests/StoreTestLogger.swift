import Logging
import UpdraftTestSupport

/// UPDRAFT_TEST_LOG=debug shows the stores' and engines' logs.
let testLogger = makeTestLogger(label: "updraft.store.tests", levelVariable: "UPDRAFT_TEST_LOG", default: .warning)
