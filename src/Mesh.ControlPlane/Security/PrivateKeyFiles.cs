using System.Security.Cryptography;

namespace Mesh.ControlPlane.Security;

/// <summary>Reads and writes private-key PEM files that only the owner may read (mode 0600).</summary>
internal static class PrivateKeyFiles
{
    private const UnixFileMode GroupOrOther =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Throws when the key file is readable or writable by group or others (with <paramref name="allowGroupRead"/>, group read is allowed).</summary>
    /// <param name="path">The key file.</param>
    /// <param name="allowGroupRead">A Kubernetes Secret volume in a pod with an fsGroup: the kubelet makes it group-readable.</param>
    /// <param name="fix">What to do instead of the chmod advice, naming the setting.</param>
    public static void EnsureOwnerOnly(string path, bool allowGroupRead = false, string? fix = null)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        var mode = File.GetUnixFileMode(path);
        var refused = allowGroupRead ? GroupOrOther & ~UnixFileMode.GroupRead : GroupOrOther;
        if ((mode & refused) != 0)
        {
            throw new InvalidOperationException(
                $"Private key file {Path.GetFullPath(path)} is accessible by {(allowGroupRead ? "others or writable by group" : "group or others")} (mode {Convert.ToString((int)mode, 8)}); refusing to use it. {fix ?? $"Run 'chmod 600 {path}'"}.");
        }
    }

    /// <summary>Writes the file with mode 0600 from the first byte on; false when it already exists (another process won).</summary>
    public static bool TryCreate(string path, string pem)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var writer = new StreamWriter(path: temp, options))
        {
            writer.Write(pem);
        }

        try
        {
            File.Move(temp, path, overwrite: false);
            return true;
        }
        catch (IOException) when (File.Exists(path))
        {
            File.Delete(temp);
            return false;
        }
    }

    /// <summary>Loads an ECDSA P-256 key from <paramref name="path"/>, creating it (0600) when missing.</summary>
    public static ECDsa LoadOrCreateEcKey(string path)
    {
        if (!File.Exists(path))
        {
            using var created = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            TryCreate(path, created.ExportPkcs8PrivateKeyPem());
        }

        return LoadEcKey(path, "delete it to have a new one made, or restore the original");
    }

    /// <summary>Loads an existing ECDSA key from <paramref name="path"/>; never creates one.</summary>
    /// <param name="path">The PEM file, mode 0600.</param>
    /// <param name="remedy">What the reader should do when the file is not a key, for the error message.</param>
    public static ECDsa LoadEcKey(string path, string remedy)
    {
        EnsureOwnerOnly(path);
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(File.ReadAllText(path));
            return key;
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            key.Dispose();
            throw new InvalidOperationException($"Private key file {Path.GetFullPath(path)} is not a PEM ECDSA private key ({ex.Message}); {remedy}.", ex);
        }
    }
}
