using Grpc.Core;

namespace Mesh.ControlPlane.Security;

/// <summary>What one authenticator concluded: no credential of its kind, an identity, or a failure reason.</summary>
/// <param name="Token">The bootstrap token that proved the identity, when one did (the CA spends it and caps the TTL).</param>
internal readonly record struct AuthenticationOutcome(WorkloadIdentity? Identity, string? Failure, BootstrapToken? Token = null)
{
    /// <summary>Gets whether the credential could not be checked now (the checker is at capacity): the caller should retry, or try another replica.</summary>
    public bool Busy { get; init; }

    public static AuthenticationOutcome NoCredential { get; } = new(null, null);

    public static AuthenticationOutcome Success(WorkloadIdentity identity) => new(identity, null);

    public static AuthenticationOutcome Success(BootstrapToken token) => new(token.Identity, null, token);

    public static AuthenticationOutcome Failed(string reason) => new(null, reason);

    public static AuthenticationOutcome Overloaded(string reason) => new(null, reason) { Busy = true };
}

/// <summary>Proves who is calling the control plane; implementations are tried in registration order.</summary>
internal interface ICallerAuthenticator
{
    /// <summary>Short name used in error messages, e.g. "client certificate".</summary>
    string Name { get; }

    /// <summary>
    /// Looks for this authenticator's kind of credential on the call. Asynchronous because some proofs ask another
    /// service (a Kubernetes TokenReview); the cheap local ones complete synchronously.
    /// </summary>
    ValueTask<AuthenticationOutcome> AuthenticateAsync(ServerCallContext context);
}

/// <summary>The TLS client certificate on the secure port, validated against the trust bundle and the SVID rules.</summary>
internal sealed class ClientCertificateAuthenticator(CertificateAuthority ca) : ICallerAuthenticator
{
    public string Name => "client certificate";

    public ValueTask<AuthenticationOutcome> AuthenticateAsync(ServerCallContext context) => ValueTask.FromResult(Authenticate(context));

    /// <summary>The same check without a task: it only reads the handshake's certificate (the registry calls it directly).</summary>
    public AuthenticationOutcome Authenticate(ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var certificate = context.GetHttpContext().Connection.ClientCertificate;
        if (certificate is null)
        {
            return AuthenticationOutcome.NoCredential;
        }

        var identity = ca.ValidateWorkloadCertificate(certificate, out var reason);
        return identity is null ? AuthenticationOutcome.Failed(reason) : AuthenticationOutcome.Success(identity);
    }
}

/// <summary>
/// A bootstrap token in the <c>authorization: Bearer</c> metadata; a spent single-use token proves nothing. With
/// ControlPlane:Kubernetes:Enabled a <see cref="TokenReviewAuthenticator"/> reads bearer tokens too: one that does not
/// claim this control plane's issuer is then left to it rather than refused here.
/// </summary>
internal sealed class BootstrapTokenAuthenticator(BootstrapTokens tokens, SpentTokens spent, Configuration.ControlPlaneOptions options) : ICallerAuthenticator
{
    private readonly bool _othersReadBearer = options?.Kubernetes.Enabled ?? throw new ArgumentNullException(nameof(options));

    public string Name => "bearer token";

    public ValueTask<AuthenticationOutcome> AuthenticateAsync(ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return ValueTask.FromResult(Authenticate(context));
    }

    private AuthenticationOutcome Authenticate(ServerCallContext context)
    {
        if (!BearerCredential.TryRead(context, out var bearer, out var malformed))
        {
            return malformed is null ? AuthenticationOutcome.NoCredential : AuthenticationOutcome.Failed(malformed);
        }

        if (_othersReadBearer && !BootstrapTokens.ClaimsOurIssuer(bearer))
        {
            return AuthenticationOutcome.NoCredential;
        }

        var token = tokens.Validate(bearer, out var reason);
        if (token is null)
        {
            return AuthenticationOutcome.Failed(reason);
        }

        return !token.Reusable && spent.IsSpent(token.Jti)
            ? AuthenticationOutcome.Failed($"bearer token {token.Jti} was already used; bootstrap tokens are single-use unless minted as reusable. Mint a new one")
            : AuthenticationOutcome.Success(token);
    }
}

/// <summary>The <c>authorization: Bearer &lt;token&gt;</c> call metadata, read one way for every authenticator.</summary>
internal static class BearerCredential
{
    private const string Prefix = "Bearer ";

    /// <summary>False with a null <paramref name="malformed"/> when there is no authorization metadata; false with a reason when it is not a bearer token.</summary>
    public static bool TryRead(ServerCallContext context, out string token, out string? malformed)
    {
        ArgumentNullException.ThrowIfNull(context);
        token = string.Empty;
        malformed = null;
        var header = context.RequestHeaders.GetValue("authorization");
        if (string.IsNullOrEmpty(header))
        {
            return false;
        }

        if (!header.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase) || header.AsSpan(Prefix.Length).Trim().IsEmpty)
        {
            malformed = "authorization metadata must be 'Bearer <token>'";
            return false;
        }

        token = header[Prefix.Length..].Trim();
        return true;
    }
}

/// <summary>
/// Runs the authenticators in order; the first identity wins, otherwise UNAUTHENTICATED naming every reason (UNAVAILABLE
/// when an authenticator was at capacity).
/// </summary>
internal sealed class CallerAuthentication(IEnumerable<ICallerAuthenticator> authenticators)
{
    private readonly ICallerAuthenticator[] _authenticators = [.. authenticators];

    /// <summary>The caller's identity, with the bootstrap token when that is what proved it; UNAUTHENTICATED otherwise.</summary>
    public async ValueTask<AuthenticationOutcome> AuthenticateCallerAsync(ServerCallContext context)
    {
        var failures = new List<string>();
        var busy = false;
        foreach (var authenticator in _authenticators)
        {
            var outcome = await authenticator.AuthenticateAsync(context).ConfigureAwait(false);
            if (outcome.Identity is not null)
            {
                return outcome;
            }

            if (outcome.Failure is not null)
            {
                failures.Add($"{authenticator.Name}: {outcome.Failure}");
                busy |= outcome.Busy;
            }
        }

        if (busy)
        {
            // Not a verdict on the credential: UNAVAILABLE, so the client backs off and may fail over to another replica.
            throw new RpcException(new Status(StatusCode.Unavailable, "caller could not be authenticated now: " + string.Join("; ", failures)));
        }

        var message = failures.Count > 0
            ? "caller is not authenticated: " + string.Join("; ", failures)
            : $"caller is not authenticated: no credential; present a mesh workload certificate as the TLS client certificate or 'authorization: Bearer <token>' ({string.Join(", ", _authenticators.Select(a => a.Name))})";
        throw new RpcException(new Status(StatusCode.Unauthenticated, message));
    }
}
