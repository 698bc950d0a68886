/// The Precept version (`precept --version`).
public enum PreceptVersion {
    public static let string = "0.1.0"
}
