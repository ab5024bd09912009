using Grpc.Net.Client;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Xds;

/// <summary>The one gRPC channel to the control plane, shared by ADS and workload registration.</summary>
internal sealed class ControlPlaneChannel : IDisposable
{
    private readonly Lazy<GrpcChannel> _channel;

    public ControlPlaneChannel(IOptions<ServiceMeshOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Address = options.Value.ControlPlane.Address
            ?? throw new InvalidOperationException("Mesh:ControlPlane:Address is required.");

        // An http:// address means h2c (prior knowledge), which GrpcChannel's default handler speaks.
        _channel = new Lazy<GrpcChannel>(() => GrpcChannel.ForAddress(Address), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public Uri Address { get; }

    public GrpcChannel Channel => _channel.Value;

    public void Dispose()
    {
        if (_channel.IsValueCreated)
        {
            _channel.Value.Dispose();
        }
    }
}
