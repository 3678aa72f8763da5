import Foundation
import UpdraftCore

extension ActorName {
    /// `cli:<login name>` for a command run on the gateway's host (`cli:<user> via sudo`
    /// under sudo): the event log says who changed what.
    public static func localCLI(environment: [String: String] = ProcessInfo.processInfo.environment) -> ActorName {
        if let sudo = environment["SUDO_USER"], !sudo.isEmpty { return ActorName("cli:\(sudo) via sudo") }
        if let user = environment["USER"] ?? environment["LOGNAME"], !user.isEmpty { return ActorName("cli:\(user)") }
        if let entry = getpwuid(getuid()), let name = entry.pointee.pw_name { return ActorName("cli:\(String(cString: name))") }
        return ActorName("cli:uid \(getuid())")
    }
}
