/// The version of this build: `updraft --version`, and the later HTTP API's `info.version`.
public enum UpdraftVersion {
    public static let current = "0.11.0"
}
