using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Mesh.Client.Security;

/// <summary>
/// <c>Mesh:Identity:CredentialFile</c>: the workload's private key and SVID chain (leaf, intermediates) in one PEM file,
/// mode 0600, so a restarted workload renews with its still-valid SVID instead of spending a new bootstrap token (what
/// SPIRE's agent does with its own SVID). Written to a temporary file created 0600 and renamed over the old one, so the
/// file is never partly written and never readable by others, not even for a moment.
/// </summary>
internal static class WorkloadCredentialFile
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode GroupOrOther =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Writes the key and chain; the key is exported only here, and only because the user opted in.</summary>
    public static void Save(string path, ECDsa key, WorkloadCertificate certificate)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(certificate);
        var text = new StringBuilder();
        text.Append(key.ExportPkcs8PrivateKeyPem()).Append('\n');
        text.Append(PemEncoding.WriteString("CERTIFICATE", certificate.Leaf.RawData)).Append('\n');
        foreach (var intermediate in certificate.Intermediates)
        {
            text.Append(PemEncoding.WriteString("CERTIFICATE", intermediate.RawData)).Append('\n');
        }

        var full = Path.GetFullPath(path);
        var temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = OwnerOnly;
        }

        try
        {
            using (var stream = new FileStream(temp, options))
            {
                stream.Write(Encoding.ASCII.GetBytes(text.ToString()));
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>
    /// Reads the file; null with a reason when it is missing, unreadable, accessible by others or not a key with its chain.
    /// The caller still validates the SVID (trust bundle, expiry, identity).
    /// </summary>
    public static bool TryLoad(string path, out X509Certificate2? leaf, out X509Certificate2Collection intermediates, out string reason)
    {
        leaf = null;
        intermediates = [];
        string pem;
        try
        {
            if (!File.Exists(path))
            {
                reason = "it does not exist yet (first start)";
                return false;
            }

            if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & GroupOrOther) != 0)
            {
                reason = $"it is accessible by group or others (mode {Convert.ToString((int)File.GetUnixFileMode(path), 8)}), so its key may have leaked";
                return false;
            }

            pem = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            reason = $"it cannot be read ({ex.Message})";
            return false;
        }

        var certificates = new X509Certificate2Collection();
        try
        {
            certificates.ImportFromPem(pem);
            if (certificates.Count == 0)
            {
                reason = "it holds no CERTIFICATE block";
                return false;
            }

            using var key = ECDsa.Create();
            key.ImportFromPem(pem);
            leaf = certificates[0].CopyWithPrivateKey(key);
            for (var i = 1; i < certificates.Count; i++)
            {
                intermediates.Add(certificates[i]);
            }

            reason = string.Empty;
            return true;
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            leaf?.Dispose();
            leaf = null;
            reason = $"it is not an ECDSA private key with its certificate chain in PEM ({ex.Message})";
            return false;
        }
    }
}
