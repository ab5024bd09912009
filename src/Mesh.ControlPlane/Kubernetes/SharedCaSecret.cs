using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;

namespace Mesh.ControlPlane.Kubernetes;

/// <summary>
/// One self-signed mesh root for every replica on Kubernetes when no CA files are configured: it lives in the Secret
/// <c>&lt;SystemNamespace&gt;/mesh-ca</c> in the layout of Istio's <c>istio-ca-secret</c> (<c>ca-cert.pem</c>,
/// <c>ca-key.pem</c>). A replica reads it; when it is absent, only the holder of the leader-election Lease creates it
/// (a create that meets 409 AlreadyExists lost the race and reads the winner's), and the others wait for it. The root is
/// written where the self-signed root lives (StateDirectory/ca), so the CA loads it as its own.
/// </summary>
internal sealed partial class SharedCaSecret(
    IKubernetes client, ControlPlaneLeaderElection election, ControlPlaneOptions options, TimeProvider time, ILogger<SharedCaSecret> logger)
{
    public const string SecretName = "mesh-ca";
    public const string CertificateKey = "ca-cert.pem";
    public const string PrivateKeyKey = "ca-key.pem";

    private string Where => $"Secret {options.Kubernetes.SystemNamespace}/{SecretName}";

    /// <summary>Gets how the root was obtained: <c>read</c> (the Secret existed) or <c>created</c> (this replica made it), null before.</summary>
    public string? Outcome { get; private set; }

    /// <summary>How long a replica waits for the Secret when another replica holds the Lease: four Lease durations (a minute by default).</summary>
    public TimeSpan WaitLimit => options.Kubernetes.LeaseDuration * 4;

    /// <summary>Reads (or, as the leader, creates) the Secret and writes its root into StateDirectory/ca; throws naming the Secret and key when it is unusable.</summary>
    public async Task EnsureAsync(CancellationToken cancellationToken)
    {
        var ns = options.Kubernetes.SystemNamespace;
        election.Start();
        var deadline = time.GetUtcNow() + WaitLimit;
        string? lastError = null;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            (V1Secret Secret, string Outcome)? found = null;
            try
            {
                if (await TryReadAsync(ns, cancellationToken).ConfigureAwait(false) is { } existing)
                {
                    found = (existing, "read");
                }
                else if (election.IsLeader)
                {
                    var created = NewRoot();
                    try
                    {
                        await client.CoreV1.CreateNamespacedSecretAsync(created, ns, cancellationToken: cancellationToken).ConfigureAwait(false);
                        found = (created, "created");
                    }
                    catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.Conflict)
                    {
                        // Another replica (a previous leader) made it meanwhile: use theirs, never a second root.
                        Log.LostCreateRace(logger, ns, SecretName);
                        continue;
                    }
                }

                lastError = null;
            }
            catch (HttpOperationException ex) when (ex.Response.StatusCode is HttpStatusCode.Forbidden or HttpStatusCode.Unauthorized)
            {
                throw new InvalidOperationException(
                    $"{Where}: the API server refused access ({(int)ex.Response.StatusCode}): the control plane's ServiceAccount needs get and create on secrets in namespace {ns} (and get, create, update on leases) to share one CA root among replicas. {ex.Response.Content}",
                    ex);
            }
            catch (Exception ex) when (ex is HttpOperationException or HttpRequestException or IOException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                lastError = ex is HttpOperationException http ? $"{(int)http.Response.StatusCode} {http.Response.Content}" : ex.Message;
                Log.ReadFailed(logger, ns, SecretName, lastError);
            }

            if (found is { } root)
            {
                Install(Parse(root.Secret), root.Outcome);
                return;
            }

            if (time.GetUtcNow() >= deadline)
            {
                throw new InvalidOperationException(
                    $"{Where} (the mesh CA root shared by all replicas) did not appear within {WaitLimit.TotalSeconds:0} s and this replica ({election.Identity}) did not become the holder of Lease {ns}/{ControlPlaneLeaderElection.LeaseName} (last seen holder: {election.Leader ?? "none"}){(lastError is null ? "" : $"; last error: {lastError}")}. " +
                    $"Check that the leader can create Secrets in {ns}, or create {SecretName} yourself (keys {CertificateKey} and {PrivateKeyKey}), or set ControlPlane:Ca:CertificateFile and KeyFile.");
            }

            // The Lease (this replica may create it) or the next poll (another replica created it), whichever comes first.
            using var poll = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var delay = Task.Delay(options.Kubernetes.RetryPeriod, time, poll.Token);
            await Task.WhenAny(delay, election.Leading).ConfigureAwait(false);
            await poll.CancelAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Checks the Secret's root: both keys present, a PEM CA certificate valid now, and the private key of that certificate.</summary>
    internal (string CertificatePem, string KeyPem) Parse(V1Secret secret)
    {
        var certificatePem = Value(secret, CertificateKey);
        var keyPem = Value(secret, PrivateKeyKey);
        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPem(certificatePem);
        }
        catch (CryptographicException ex)
        {
            throw new InvalidOperationException($"{Where} key {CertificateKey} is not a PEM certificate ({ex.Message}); fix or delete the Secret (deleting it makes a new root: every workload certificate must then be reissued).", ex);
        }

        using (certificate)
        {
            var constraints = certificate.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
            if (constraints is not { CertificateAuthority: true })
            {
                throw new InvalidOperationException($"{Where} key {CertificateKey} holds '{certificate.Subject}', which is not a CA certificate (basic constraints CA:true).");
            }

            var now = time.GetUtcNow().UtcDateTime;
            if (certificate.NotAfter.ToUniversalTime() <= now || certificate.NotBefore.ToUniversalTime() > now)
            {
                throw new InvalidOperationException($"{Where} key {CertificateKey} holds '{certificate.Subject}', valid {certificate.NotBefore.ToUniversalTime():O} to {certificate.NotAfter.ToUniversalTime():O}, not now; rotate the root.");
            }

            try
            {
                using var paired = X509Certificate2.CreateFromPem(certificatePem, keyPem);
            }
            catch (Exception ex) when (ex is CryptographicException or ArgumentException)
            {
                throw new InvalidOperationException($"{Where} key {PrivateKeyKey} is not the private key of the certificate in {CertificateKey} ({ex.Message}); the Secret was altered: restore both keys together. The control plane does not make a new root over it.", ex);
            }
        }

        return (certificatePem, keyPem);
    }

    private string Value(V1Secret secret, string key)
    {
        if (secret.Data?.TryGetValue(key, out var bytes) != true || bytes is null || bytes.Length == 0)
        {
            throw new InvalidOperationException($"{Where} has no data key {key} (expected {CertificateKey} and {PrivateKeyKey}, as Istio's istio-ca-secret); restore it or delete the Secret.");
        }

        return Encoding.ASCII.GetString(bytes);
    }

    private async Task<V1Secret?> TryReadAsync(string ns, CancellationToken cancellationToken)
    {
        try
        {
            return await client.CoreV1.ReadNamespacedSecretAsync(SecretName, ns, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    private V1Secret NewRoot()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName("CN=Mesh Root CA, O=Mesh"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = time.GetUtcNow();

        // Backdated like the file-made root, so a leaf's NotBefore (now − clock skew) lies inside it.
        using var root = request.CreateSelfSigned(now - TimeSpan.FromHours(1), now - TimeSpan.FromHours(1) + CertificateAuthority.RootLifetime);
        return new V1Secret
        {
            Metadata = new V1ObjectMeta
            {
                Name = SecretName,
                NamespaceProperty = options.Kubernetes.SystemNamespace,
                Labels = new Dictionary<string, string> { ["app.kubernetes.io/managed-by"] = "mesh-control-plane" },
                Annotations = new Dictionary<string, string> { ["mesh.dev/created-by"] = election.Identity },
            },
            Type = "istio.io/ca-root",
            Data = new Dictionary<string, byte[]>
            {
                [CertificateKey] = Encoding.ASCII.GetBytes(CertificateAuthority.ToPem(root)),
                [PrivateKeyKey] = Encoding.ASCII.GetBytes(key.ExportPkcs8PrivateKeyPem()),
            },
        };
    }

    /// <summary>Writes the root where the CA loads its self-signed root; a different local root is replaced (the Secret is the mesh's).</summary>
    private void Install((string CertificatePem, string KeyPem) root, string outcome)
    {
        var certificatePath = CertificateAuthority.RootCertPath(options);
        var keyPath = CertificateAuthority.RootKeyPath(options);
        var same = File.Exists(certificatePath) && File.Exists(keyPath)
            && File.ReadAllText(certificatePath) == root.CertificatePem && File.ReadAllText(keyPath) == root.KeyPem;
        if (!same)
        {
            if (File.Exists(certificatePath))
            {
                Log.ReplacingLocalRoot(logger, certificatePath, options.Kubernetes.SystemNamespace, SecretName);
            }

            Directory.CreateDirectory(Path.GetDirectoryName(certificatePath)!);
            File.Delete(certificatePath);
            File.Delete(keyPath);
            PrivateKeyFiles.TryCreate(keyPath, root.KeyPem);
            var temp = certificatePath + ".tmp";
            File.WriteAllText(temp, root.CertificatePem, Encoding.ASCII);
            File.Move(temp, certificatePath, overwrite: true);
        }

        Outcome = outcome;
        Log.Installed(logger, outcome, options.Kubernetes.SystemNamespace, SecretName, election.IsLeader);
    }
}
