using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Grpc.Core;
using Mesh.ControlPlane.Tests.Support;
using Mesh.Xds.Registry.V1;

namespace Mesh.ControlPlane.Tests.Security;

public class RegistrationAuthorizationTests
{
    // A misspelt security.istio.io kind makes the whole folder invalid.
    private const string MistypedPolicy = """
        apiVersion: security.istio.io/v1
        kind: AuthorisationPolicy
        metadata: {name: deny-admin}
        spec:
          action: DENY
          rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
        """;

    private const string Services = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: orders
        spec:
          hosts: [orders]
          ports:
          - number: 80
            name: http
            protocol: HTTP
          workloadSelector:
            labels: {app: orders}
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: payments
        spec:
          hosts: [payments]
          ports:
          - number: 80
            name: http
            protocol: HTTP
          workloadSelector:
            labels: {app: payments}
          subjectAltNames:
          - spiffe://cluster.local/ns/default/sa/payments-v2
          - spiffe://cluster.local/ns/default/sa/payments-canary
        """;

    [Fact]
    public async Task Register_OwnIdentityByConvention_Accepted()
    {
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));

        var response = await (await As(cp, "orders")).RegisterAsync(Request("orders", "orders"));

        Assert.Equal(["orders.default.svc.cluster.local"], response.Services);
        await WaitForEndpointsAsync(cp, "orders.default.svc.cluster.local", 1);
    }

    [Fact]
    public async Task Register_WithWorkloadCertificate_Accepted()
    {
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));
        var (_, leaf) = await cp.IssueAsync(cp.Token("default", "orders"));

        var response = await new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(leaf)).RegisterAsync(Request("orders", "orders"));

        Assert.NotEmpty(response.LeaseId);
    }

    [Fact]
    public async Task Register_OtherServiceAccountThanCaller_PermissionDeniedNamingBoth()
    {
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));

        var ex = await Assert.ThrowsAsync<RpcException>(async () => await (await As(cp, "evil")).RegisterAsync(Request("orders", "orders")).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Contains("workload.service_account 'orders'", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("spiffe://cluster.local/ns/default/sa/evil", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Register_SelectedByServiceRunningAsOtherAccount_PermissionDeniedAndNeverAnEndpoint()
    {
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));

        var ex = await Assert.ThrowsAsync<RpcException>(async () => await (await As(cp, "evil")).RegisterAsync(Request("orders", "evil")).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.StartsWith(
            "workload spiffe://cluster.local/ns/default/sa/evil may not register as an instance of orders.default.svc.cluster.local, which runs as spiffe://cluster.local/ns/default/sa/orders",
            ex.Status.Detail, StringComparison.Ordinal);
        var leases = (Mesh.ControlPlane.Registry.WorkloadLeaseRegistry)cp.Host.Services.GetService(typeof(Mesh.ControlPlane.Registry.WorkloadLeaseRegistry))!;
        Assert.Empty(leases.Workloads());
        Assert.Equal(0, await EndpointCountAsync(cp, "orders.default.svc.cluster.local"));
    }

    [Fact]
    public async Task Register_ServiceEntrySubjectAltNames_HonouredInsteadOfConvention()
    {
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));

        var allowed = await (await As(cp, "payments-canary")).RegisterAsync(Request("payments", "payments-canary"));
        var ex = await Assert.ThrowsAsync<RpcException>(async () => await (await As(cp, "payments")).RegisterAsync(Request("payments", "payments")).ResponseAsync);

        Assert.Equal(["payments.default.svc.cluster.local"], allowed.Services);
        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Contains("which runs as spiffe://cluster.local/ns/default/sa/payments-v2 or spiffe://cluster.local/ns/default/sa/payments-canary", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Register_NoCredentialOnSecurePort_Unauthenticated()
    {
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));

        var ex = await Assert.ThrowsAsync<RpcException>(() => Registry(cp).RegisterAsync(Request("orders", "orders")).ResponseAsync);

        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
    }

    [Fact]
    public async Task Register_BootstrapTokenWithoutCertificate_UnauthenticatedEvenBeforeTheTokenIsSpent()
    {
        // A single-use token is spent by the CA only: accepted here, it could register (and renew, deregister) until it
        // expires. The registry, like ADS, takes only the workload certificate the token buys.
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));
        var token = cp.Token("default", "orders");

        var first = await Assert.ThrowsAsync<RpcException>(() => Registry(cp).RegisterAsync(Request("orders", "orders"), SecureHost.Bearer(token)).ResponseAsync);
        var replay = await Assert.ThrowsAsync<RpcException>(() => Registry(cp).RegisterAsync(Request("orders", "orders"), SecureHost.Bearer(token)).ResponseAsync);

        Assert.Equal((StatusCode.Unauthenticated, StatusCode.Unauthenticated), (first.StatusCode, replay.StatusCode));
        Assert.StartsWith("the workload registry on the secure port requires the workload certificate as the TLS client certificate", first.Status.Detail, StringComparison.Ordinal);
        var leases = (Mesh.ControlPlane.Registry.WorkloadLeaseRegistry)cp.Host.Services.GetService(typeof(Mesh.ControlPlane.Registry.WorkloadLeaseRegistry))!;
        Assert.Empty(leases.Leases());

        // The token still buys its certificate (it was not spent by the refused registrations), and that registers.
        var (_, leaf) = await cp.IssueAsync(token);
        Assert.NotEmpty((await new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(leaf)).RegisterAsync(Request("orders", "orders"))).LeaseId);
    }

    [Fact]
    public async Task Deregister_LeaseOfAnotherIdentity_PermissionDenied()
    {
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));
        var lease = await (await As(cp, "orders")).RegisterAsync(Request("orders", "orders"));

        var ex = await Assert.ThrowsAsync<RpcException>(async () => await (await As(cp, "evil")).DeregisterAsync(new DeregisterRequest { LeaseId = lease.LeaseId }).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        var leases = (Mesh.ControlPlane.Registry.WorkloadLeaseRegistry)cp.Host.Services.GetService(typeof(Mesh.ControlPlane.Registry.WorkloadLeaseRegistry))!;
        Assert.NotNull(leases.Find(lease.LeaseId));
    }

    [Fact]
    public async Task Register_PlaintextPortWhenAllowed_KeepsUnauthenticatedBehaviour()
    {
        await using var cp = await SecureHost.StartAsync(args: ["--ControlPlane:PlaintextRegistration=true"], plaintextXds: true, files: ("services.yaml", Services));

        var response = await new WorkloadRegistry.WorkloadRegistryClient(cp.PlaintextChannel()).RegisterAsync(Request("orders", "evil"));

        Assert.NotEmpty(response.LeaseId);
    }

    [Fact]
    public async Task Register_PlaintextPortByDefault_PermissionDenied()
    {
        await using var cp = await SecureHost.StartAsync(plaintextXds: true, files: ("services.yaml", Services));

        var ex = await Assert.ThrowsAsync<RpcException>(() => new WorkloadRegistry.WorkloadRegistryClient(cp.PlaintextChannel()).RegisterAsync(Request("orders", "orders")).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Contains("ControlPlane:PlaintextRegistration=false", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Renew_LeaseOfAnotherIdentity_PermissionDeniedNamingBoth()
    {
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));
        var lease = await (await As(cp, "orders")).RegisterAsync(Request("orders", "orders"));

        var ex = await Assert.ThrowsAsync<RpcException>(async () => await (await As(cp, "evil")).RenewAsync(new RenewRequest { LeaseId = lease.LeaseId }).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Equal($"caller spiffe://cluster.local/ns/default/sa/evil may not renew lease '{lease.LeaseId}', which belongs to spiffe://cluster.local/ns/default/sa/orders", ex.Status.Detail);
    }

    [Fact]
    public async Task Renew_ServiceNoLongerRunsAsTheOwner_PermissionDenied()
    {
        await using var cp = await SecureHost.StartAsync(files: ("services.yaml", Services));
        var (_, orders) = await cp.IssueAsync(cp.Token("default", "orders"));
        var owner = new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(orders));
        var lease = await owner.RegisterAsync(Request("orders", "orders"));

        // The operator says orders now runs as orders-v2 only: the old identity's lease may not be renewed into it.
        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "services.yaml"), Services.Replace(
            "  workloadSelector:\n    labels: {app: orders}\n", "  workloadSelector:\n    labels: {app: orders}\n  subjectAltNames: [spiffe://cluster.local/ns/default/sa/orders-v2]\n", StringComparison.Ordinal));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        RpcException? refused = null;
        while (refused is null)
        {
            Assert.True(DateTime.UtcNow < deadline, "Renew kept succeeding after the ServiceEntry changed its subjectAltNames");
            try
            {
                await owner.RenewAsync(new RenewRequest { LeaseId = lease.LeaseId });
                await Task.Delay(50);
            }
            catch (RpcException ex)
            {
                refused = ex;
            }
        }

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("which runs as spiffe://cluster.local/ns/default/sa/orders-v2", refused.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Renew_RestartedWithInvalidFolder_UnavailableLikeRegister()
    {
        var root = SecureHost.NewRoot();
        try
        {
            X509Certificate2 orders;
            string leaseId;
            await using (var first = await SecureHost.StartAsync(root, files: ("services.yaml", Services)))
            {
                (_, orders) = await first.IssueAsync(first.Token("default", "orders"));
                leaseId = (await new WorkloadRegistry.WorkloadRegistryClient(first.SecureChannel(orders)).RegisterAsync(Request("orders", "orders"))).LeaseId;
            }

            // The lease survives the restart (state file); the folder does not: authorization would read an empty config.
            await File.WriteAllTextAsync(Path.Combine(root, "config", "policy.yaml"), MistypedPolicy);
            await using var second = await SecureHost.StartAsync(root);
            var owner = new WorkloadRegistry.WorkloadRegistryClient(second.SecureChannel(orders));

            var renew = await Assert.ThrowsAsync<RpcException>(() => owner.RenewAsync(new RenewRequest { LeaseId = leaseId }).ResponseAsync);
            var register = await Assert.ThrowsAsync<RpcException>(() => owner.RegisterAsync(Request("orders", "orders")).ResponseAsync);

            Assert.Equal(StatusCode.Unavailable, renew.StatusCode);
            Assert.Equal(register.Status.Detail, renew.Status.Detail);
            Assert.StartsWith("control plane not ready: no valid config folder loaded yet", renew.Status.Detail, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    // orders' instance declared statically, without spec.serviceAccount: it belongs to the identity its ServiceEntry runs as.
    private const string StaticOrders = """
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata:
          name: orders-static
        spec:
          address: 127.0.0.1
          ports: {http: 5001}
          labels: {app: orders}
        """;

    [Fact]
    public async Task Register_AddressOfStaticEntryWithoutServiceAccount_OtherIdentityPermissionDeniedNamingBoth()
    {
        await using var cp = await SecureHost.StartAsync(files: [("services.yaml", Services), ("orders-static.yaml", StaticOrders)]);
        var (_, frontend) = await cp.IssueAsync(cp.Token("default", "frontend"));
        var (_, orders) = await cp.IssueAsync(cp.Token("default", "orders"));

        // frontend's own labels (no ServiceEntry selects them) on orders' address:port: it would take orders' inbound listener.
        var ex = await Assert.ThrowsAsync<RpcException>(() => new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(frontend)).RegisterAsync(Request("frontend", "frontend")).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Equal(
            "address 127.0.0.1:5001 is declared for spiffe://cluster.local/ns/default/sa/orders (WorkloadEntry default/orders-static has no spec.serviceAccount: it belongs to the identities of the ServiceEntries selecting it); " +
            "spiffe://cluster.local/ns/default/sa/frontend may not register it",
            ex.Status.Detail);

        // The identity its service runs as still may.
        var lease = await new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(orders)).RegisterAsync(Request("orders", "orders"));
        Assert.NotEmpty(lease.LeaseId);
    }

    [Fact]
    public async Task Register_AddressOfStaticEntryNoServiceSelects_RefusedToEveryIdentity()
    {
        await using var cp = await SecureHost.StartAsync(files: [("services.yaml", Services), ("orders-static.yaml", StaticOrders.Replace("{app: orders}", "{app: legacy}", StringComparison.Ordinal))]);
        var (_, frontend) = await cp.IssueAsync(cp.Token("default", "frontend"));

        var ex = await Assert.ThrowsAsync<RpcException>(() => new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(frontend)).RegisterAsync(Request("frontend", "frontend")).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.StartsWith("address 127.0.0.1:5001 is declared for no identity (WorkloadEntry default/orders-static has no spec.serviceAccount", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PlaintextPort_SecureLease_CannotBeRenewedDeregisteredOrOverwritten()
    {
        await using var cp = await SecureHost.StartAsync(args: ["--ControlPlane:PlaintextRegistration=true"], plaintextXds: true, files: ("services.yaml", Services));
        var lease = await (await As(cp, "orders")).RegisterAsync(Request("orders", "orders"));
        var plaintext = new WorkloadRegistry.WorkloadRegistryClient(cp.PlaintextChannel());

        var renew = await Assert.ThrowsAsync<RpcException>(() => plaintext.RenewAsync(new RenewRequest { LeaseId = lease.LeaseId }).ResponseAsync);
        var deregister = await Assert.ThrowsAsync<RpcException>(() => plaintext.DeregisterAsync(new DeregisterRequest { LeaseId = lease.LeaseId }).ResponseAsync);
        var overwrite = await Assert.ThrowsAsync<RpcException>(() => plaintext.RegisterAsync(Request("orders", "orders")).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, renew.StatusCode);
        Assert.Equal($"lease '{lease.LeaseId}' belongs to spiffe://cluster.local/ns/default/sa/orders, registered over the TLS port; a plaintext caller may not renew it", renew.Status.Detail);
        Assert.Equal(StatusCode.PermissionDenied, deregister.StatusCode);
        Assert.Equal(StatusCode.PermissionDenied, overwrite.StatusCode);
        Assert.Contains("is held by spiffe://cluster.local/ns/default/sa/orders", overwrite.Status.Detail, StringComparison.Ordinal);
        var leases = (Mesh.ControlPlane.Registry.WorkloadLeaseRegistry)cp.Host.Services.GetService(typeof(Mesh.ControlPlane.Registry.WorkloadLeaseRegistry))!;
        var kept = Assert.Single(leases.Leases());
        Assert.Equal((lease.LeaseId, true), (kept.Id, kept.Workload.CertifiedIdentity));
    }

    [Fact]
    public async Task Register_BeyondMaxLeasesPerIdentity_ResourceExhaustedNamingCapAndKey()
    {
        await using var cp = await SecureHost.StartAsync(args: ["--ControlPlane:MaxLeasesPerIdentity=1"], files: ("services.yaml", Services));
        var (_, orders) = await cp.IssueAsync(cp.Token("default", "orders"));
        var registry = new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(orders));
        await registry.RegisterAsync(Request("orders", "orders"));
        var second = Request("orders", "orders");
        second.Workload.Ports["http"] = 5002;

        var ex = await Assert.ThrowsAsync<RpcException>(() => registry.RegisterAsync(second).ResponseAsync);

        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.StartsWith("spiffe://cluster.local/ns/default/sa/orders already holds 1 leases, the limit ControlPlane:MaxLeasesPerIdentity=1", ex.Status.Detail, StringComparison.Ordinal);
    }

    private static WorkloadRegistry.WorkloadRegistryClient Registry(SecureHost cp) => new(cp.SecureChannel());

    /// <summary>The registry as a workload of default/<paramref name="serviceAccount"/>: its SVID as the TLS client certificate.</summary>
    private static async Task<WorkloadRegistry.WorkloadRegistryClient> As(SecureHost cp, string serviceAccount)
    {
        var (_, leaf) = await cp.IssueAsync(cp.Token("default", serviceAccount));
        return new(cp.SecureChannel(leaf));
    }

    private static RegisterRequest Request(string app, string serviceAccount) => new()
    {
        Workload = new WorkloadEntry
        {
            Namespace = "default",
            Address = "127.0.0.1",
            Ports = { ["http"] = 5001 },
            Labels = { ["app"] = app },
            ServiceAccount = serviceAccount,
        },
    };

    private static async Task<int> EndpointCountAsync(SecureHost cp, string host)
    {
        using var dump = JsonDocument.Parse(await cp.Admin.GetStringAsync(new Uri("/debug/config_dump", UriKind.Relative)));
        return dump.RootElement.GetProperty("services").EnumerateArray()
            .Where(s => s.GetProperty("host").GetString() == host)
            .Sum(s => s.GetProperty("endpoints").GetArrayLength());
    }

    private static Task WaitForEndpointsAsync(SecureHost cp, string host, int expected) =>
        Poll.UntilAsync(async () => await EndpointCountAsync(cp, host) == expected, $"{host} did not reach {expected} endpoint(s)");
}
