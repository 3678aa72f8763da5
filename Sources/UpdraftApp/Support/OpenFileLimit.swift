import Foundation
import UpdraftCore

/// Each libmosquitto client holds a few descriptors (socket plus wake pipe), so a
/// simulated fleet of 1000 devices needs more than the usual soft limit of 1024.
public enum OpenFileLimit {
    /// Raises the soft limit toward the hard limit so that `needed` descriptors fit, or
    /// throws `open_file_limit` with the numbers. Running out of descriptors later would
    /// end in a trap inside libdispatch, not in an error, so the check comes first.
    public static func reserve(_ needed: Int) throws(UpdraftError) {
        #if os(Linux)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return }
        let wanted = rlim_t(needed)
        if limit.rlim_cur >= wanted { return }
        limit.rlim_cur = min(wanted, limit.rlim_max)
        _ = setrlimit(resource, &limit)
        if limit.rlim_cur >= wanted { return }
        throw UpdraftError(
            "open_file_limit",
            "This needs about \(needed) open files but the hard limit is \(limit.rlim_max); raise it (ulimit -Hn, or LimitNOFILE= in a systemd unit) or run fewer devices.")
    }

    /// Descriptors for `devices` simulated devices plus the gateway's own.
    public static func forDevices(_ devices: Int) -> Int { devices * 4 + 256 }
}
